package worker

import (
	"context"
	"fmt"

	"github.com/infonce/infonce/contrastive"
	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/model"
)

// VLA is the objective name of the fused observation–action loss.
const VLA = "vla"

// vlaObjective aligns what a robot observes, an image u and its
// instruction v fused by the model's learned head (model.FusionHead),
//
//	f_i = L2Normalize(W2 · act(W1 · [u_i; v_i] + b1) + b2),
//
// with what it does, the action-chunk embedding w_i:
//
//	L = CLIP(f, w),
//
// CLIP's symmetric InfoNCE over the global batch (contrastive.CLIP, exact
// across ranks). The head is a per-row map, so each rank fuses its own
// rows with no communication; the gradient ∂L/∂f the loss writes for the
// local rows flows back through the head into ∂L/∂u, ∂L/∂v and the head's
// parameter gradient, whose sum over the ranks the step's all-reduce
// forms like every tower's.
type vlaObjective[T gemm.Float] struct {
	loss   contrastive.CLIP[T]
	all    bool // mask false negatives by the rows' ids (label, task, episode)
	hidden int  // --fusion-hidden

	head  *model.FusionHead[T] // the model's head, gradients into dHead
	off   int                  // the head's offset in the flat buffer
	dHead []T                  // ∂L/∂(W1, b1, W2, b2) of this rank's rows
	df    []T                  // ∂L/∂f
}

func newVLA[T gemm.Float](cfg Config) (Objective[T], error) {
	o := &vlaObjective[T]{loss: contrastive.CLIP[T]{Chunk: cfg.Chunk}, hidden: cfg.FusionHidden}
	// As in tri's action terms: ids of a label, task or episode mark
	// positives among the rows; a caption's do not pair actions.
	o.all = cfg.MaskFalseNegatives && cfg.MaskField != "" && cfg.MaskField != MaskCaption
	o.loss.MaskFalseNegatives = o.all
	return o, nil
}

func (*vlaObjective[T]) Views() []ViewSpec {
	return []ViewSpec{
		{Name: "image", Tower: model.ModalityImage},
		{Name: "text", Tower: model.ModalityText},
		{Name: "action", Tower: model.ModalityAction},
	}
}

// Fusion asks the model for a fusion head of hidden width --fusion-hidden.
func (o *vlaObjective[T]) Fusion() (kind string, hidden int) { return model.FusionMLP, o.hidden }

// Init takes the model's fusion head over a gradient buffer of the
// objective's own (see AddParamGrad).
func (o *vlaObjective[T]) Init(m *model.Model[T]) error {
	if m.Fusion == nil {
		return fmt.Errorf("objective %s: the model has no fusion head", VLA)
	}
	o.dHead = make([]T, m.Fusion.NumParams())
	h, err := m.FusionWithGrad(o.dHead)
	if err != nil {
		return fmt.Errorf("objective %s: %w", VLA, err)
	}
	o.head, o.off = h, m.FusionOff
	return nil
}

func (o *vlaObjective[T]) Loss(ctx context.Context, coll contrastive.Collective, in *LossInput[T]) (contrastive.Result[T], error) {
	u, v, w := &in.Views[0], &in.Views[1], &in.Views[2]
	if o.head == nil {
		return contrastive.Result[T]{}, fmt.Errorf("objective %s: no fusion head (Init was not called)", VLA)
	}
	d := in.D
	n := len(u.Emb) / d
	f, err := o.head.Forward(u.Emb, v.Emb, n)
	if err != nil {
		return contrastive.Result[T]{}, err
	}
	var ids []int32
	if o.all {
		ids = v.Groups
	}
	o.df = grow(o.df, len(f))
	r, err := o.loss.Compute(ctx, coll, contrastive.CLIPInput[T]{
		U: f, V: w.Emb, D: d, Counts: in.Counts, Scale: in.Scale, IDs: ids, DU: o.df, DV: w.DEmb,
	})
	if err != nil {
		return r, fmt.Errorf("observation-action: %w", err)
	}
	clear(o.dHead)
	du, dv, err := o.head.Backward(o.df)
	if err != nil {
		return r, err
	}
	copy(u.DEmb, du)
	copy(v.DEmb, dv)
	return r, nil
}

// AddParamGrad adds the head's gradient of the last Loss into its segments
// of g, the model's P.G.
func (o *vlaObjective[T]) AddParamGrad(g []T) {
	dst := g[o.off : o.off+len(o.dHead)]
	for i, x := range o.dHead {
		dst[i] += x
	}
}

func init() {
	mustRegister(VLA, newVLA[float32], newVLA[float64])
}

package worker

import (
	"context"

	"github.com/infonce/infonce/contrastive"
	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/model"
)

// DecisionNCE is the objective name of the trajectory-instruction loss.
const DecisionNCE = "decisionnce"

// decisionNCEObjective is DecisionNCE-T (Li et al. 2024): a segment of an
// episode, from the sample's frame to a later one at most --tcn-window
// steps on, is represented by the difference of their image embeddings,
//
//	e_i = (u_end,i − u_start,i) / √(‖u_end,i − u_start,i‖² + ε²),
//
// and scored against the instructions of the global batch with CLIP's
// symmetric InfoNCE between e and the instruction embeddings v; the
// gradient flows back through the difference to both frames.
type decisionNCEObjective[T gemm.Float] struct {
	loss contrastive.CLIP[T]
	norm model.L2Normalize[T] // e = Δ/√(‖Δ‖² + ε²), as the towers normalise
	diff []T                  // Δ = u_end − u_start
	de   []T                  // ∂L/∂e
}

func newDecisionNCE[T gemm.Float](cfg Config) (Objective[T], error) {
	return &decisionNCEObjective[T]{loss: contrastive.CLIP[T]{Chunk: cfg.Chunk, MaskFalseNegatives: cfg.MaskFalseNegatives}}, nil
}

func (*decisionNCEObjective[T]) Views() []ViewSpec {
	return []ViewSpec{
		{Name: "image", Tower: model.ModalityImage},
		{Name: "text", Tower: model.ModalityText},
		{Name: "image_end", Tower: model.ModalityImage, Nearby: true, Later: true},
	}
}

func (o *decisionNCEObjective[T]) Loss(ctx context.Context, coll contrastive.Collective, in *LossInput[T]) (contrastive.Result[T], error) {
	u0, v, u1 := &in.Views[0], &in.Views[1], &in.Views[2]
	d, n := in.D, len(u0.Emb)
	o.diff, o.de = grow(o.diff, n), grow(o.de, n)
	for j := range o.diff {
		o.diff[j] = u1.Emb[j] - u0.Emb[j]
	}
	o.norm.N = d
	e, err := o.norm.Forward(o.diff, n/d)
	if err != nil {
		return contrastive.Result[T]{}, err
	}
	r, err := o.loss.Compute(ctx, coll, contrastive.CLIPInput[T]{
		U: e, V: v.Emb, D: d, Counts: in.Counts, Scale: in.Scale, IDs: v.Groups, DU: o.de, DV: v.DEmb,
	})
	if err != nil {
		return r, err
	}
	// ∂L/∂u_end = ∂L/∂Δ, ∂L/∂u_start = −∂L/∂Δ.
	dDiff, err := o.norm.Backward(o.de)
	if err != nil {
		return r, err
	}
	for j, g := range dDiff {
		u1.DEmb[j], u0.DEmb[j] = g, -g
	}
	return r, nil
}

func init() {
	mustRegister(DecisionNCE, newDecisionNCE[float32], newDecisionNCE[float64])
}

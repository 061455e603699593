package worker

import (
	"context"
	"fmt"

	"github.com/infonce/infonce/contrastive"
	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/model"
)

// clipObjective is CLIP's symmetric InfoNCE between an image and its
// caption (contrastive.CLIP): views image and text.
// With --tcn-weight λ > 0 it adds λ times the time-contrastive loss of
// tcnObjective, over a third view: a nearby frame of each image's episode.
// --hard-negatives and --debias reweight the negatives of CLIP's two
// directions, not those of the time-contrastive term.
type clipObjective[T gemm.Float] struct {
	loss contrastive.CLIP[T]
	tcn  *tcnObjective[T] // nil without --tcn-weight
	lam  T
	du   []T // CLIP's ∂L/∂u before the time-contrastive term is added
}

func newCLIP[T gemm.Float](cfg Config) (Objective[T], error) {
	o := &clipObjective[T]{loss: contrastive.CLIP[T]{Chunk: cfg.Chunk, MaskFalseNegatives: cfg.MaskFalseNegatives, Negatives: cfg.negatives()}}
	if cfg.TCNWeight > 0 {
		o.tcn, o.lam = &tcnObjective[T]{loss: contrastive.NTXent[T]{Chunk: cfg.Chunk}}, T(cfg.TCNWeight)
	}
	return o, nil
}

func (o *clipObjective[T]) Views() []ViewSpec {
	v := []ViewSpec{
		{Name: "image", Tower: model.ModalityImage},
		{Name: "text", Tower: model.ModalityText},
	}
	if o.tcn != nil {
		v = append(v, ViewSpec{Name: "image_nearby", Tower: model.ModalityImage, Nearby: true})
	}
	return v
}

func (o *clipObjective[T]) Loss(ctx context.Context, coll contrastive.Collective, in *LossInput[T]) (contrastive.Result[T], error) {
	u, v := &in.Views[0], &in.Views[1]
	r, err := o.loss.Compute(ctx, coll, contrastive.CLIPInput[T]{
		U: u.Emb, V: v.Emb, D: in.D, Counts: in.Counts, Scale: in.Scale, IDs: v.Groups, DU: u.DEmb, DV: v.DEmb,
	})
	if err != nil || o.tcn == nil {
		return r, err
	}
	// L = L_CLIP + λ·L_TCN: the time-contrastive term's gradient of the
	// image embeddings adds to CLIP's.
	o.du = grow(o.du, len(u.DEmb))
	copy(o.du, u.DEmb)
	near := &in.Views[2]
	rt, err := o.tcn.contrast(ctx, coll, in, u, near)
	if err != nil {
		return r, fmt.Errorf("time-contrastive: %w", err)
	}
	for i := range u.DEmb {
		u.DEmb[i] = o.du[i] + o.lam*u.DEmb[i]
	}
	for i := range near.DEmb {
		near.DEmb[i] *= o.lam
	}
	r.Loss += o.lam * rt.Loss
	r.DT += o.lam * rt.DT
	return r, nil
}

// TCN is the objective name of the time-contrastive loss.
const TCN = "tcn"

// tcnObjective is time-contrastive learning as in R3M (Nair et al. 2022)
// and TCN (Sermanet et al. 2018): a frame and another frame of its
// episode at most --tcn-window steps away are positives; the other frames
// of the global batch, of other episodes or further apart, are negatives.
// The loss is NT-Xent (contrastive.NTXent) over the 2B frames.
type tcnObjective[T gemm.Float] struct {
	loss contrastive.NTXent[T]
}

func newTCN[T gemm.Float](cfg Config) (Objective[T], error) {
	return &tcnObjective[T]{loss: contrastive.NTXent[T]{Chunk: cfg.Chunk}}, nil
}

func (*tcnObjective[T]) Views() []ViewSpec {
	return []ViewSpec{
		{Name: "image", Tower: model.ModalityImage},
		{Name: "image_nearby", Tower: model.ModalityImage, Nearby: true},
	}
}

func (o *tcnObjective[T]) Loss(ctx context.Context, coll contrastive.Collective, in *LossInput[T]) (contrastive.Result[T], error) {
	return o.contrast(ctx, coll, in, &in.Views[0], &in.Views[1])
}

// contrast is NT-Xent between the frames a and their nearby frames b,
// writing into a.DEmb and b.DEmb.
func (o *tcnObjective[T]) contrast(ctx context.Context, coll contrastive.Collective, in *LossInput[T], a, b *View[T]) (contrastive.Result[T], error) {
	return o.loss.Compute(ctx, coll, contrastive.NTXentInput[T]{
		Z1: a.Emb, Z2: b.Emb, D: in.D, Counts: in.Counts, Scale: in.Scale, DZ1: a.DEmb, DZ2: b.DEmb,
	})
}

// simCLRObjective is SimCLR's NT-Xent over two augmented views of each
// image (contrastive.NTXent): views image and image2, both through the
// image tower.
type simCLRObjective[T gemm.Float] struct {
	loss contrastive.NTXent[T]
}

func newSimCLR[T gemm.Float](cfg Config) (Objective[T], error) {
	return &simCLRObjective[T]{loss: contrastive.NTXent[T]{Chunk: cfg.Chunk, Negatives: cfg.negatives()}}, nil
}

func (*simCLRObjective[T]) Views() []ViewSpec {
	return []ViewSpec{
		{Name: "image", Tower: model.ModalityImage, Augment: 1},
		{Name: "image2", Tower: model.ModalityImage, Augment: 2},
	}
}

func (o *simCLRObjective[T]) Loss(ctx context.Context, coll contrastive.Collective, in *LossInput[T]) (contrastive.Result[T], error) {
	z1, z2 := &in.Views[0], &in.Views[1]
	return o.loss.Compute(ctx, coll, contrastive.NTXentInput[T]{
		Z1: z1.Emb, Z2: z2.Emb, D: in.D, Counts: in.Counts, Scale: in.Scale, DZ1: z1.DEmb, DZ2: z2.DEmb,
	})
}

func init() {
	mustRegister(CLIP, newCLIP[float32], newCLIP[float64])
	mustRegister(SimCLR, newSimCLR[float32], newSimCLR[float64])
	mustRegister(MoCo, newMoCo[float32], newMoCo[float64])
	mustRegister(TCN, newTCN[float32], newTCN[float64])
}

package worker

import (
	"context"

	"github.com/infonce/infonce/contrastive"
	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/model"
)

// clipObjective is CLIP's symmetric InfoNCE between an image and its
// caption (contrastive.CLIP): views image and text.
type clipObjective[T gemm.Float] struct {
	loss contrastive.CLIP[T]
}

func newCLIP[T gemm.Float](cfg Config) (Objective[T], error) {
	return &clipObjective[T]{loss: contrastive.CLIP[T]{Chunk: cfg.Chunk, MaskFalseNegatives: cfg.MaskFalseNegatives}}, nil
}

func (*clipObjective[T]) Views() []ViewSpec {
	return []ViewSpec{
		{Name: "image", Tower: model.ModalityImage},
		{Name: "text", Tower: model.ModalityText},
	}
}

func (o *clipObjective[T]) Loss(ctx context.Context, coll contrastive.Collective, in *LossInput[T]) (contrastive.Result[T], error) {
	u, v := &in.Views[0], &in.Views[1]
	return o.loss.Compute(ctx, coll, contrastive.CLIPInput[T]{
		U: u.Emb, V: v.Emb, D: in.D, Counts: in.Counts, Scale: in.Scale, IDs: v.Groups, DU: u.DEmb, DV: v.DEmb,
	})
}

// simCLRObjective is SimCLR's NT-Xent over two augmented views of each
// image (contrastive.NTXent): views image and image2, both through the
// image tower.
type simCLRObjective[T gemm.Float] struct {
	loss contrastive.NTXent[T]
}

func newSimCLR[T gemm.Float](cfg Config) (Objective[T], error) {
	return &simCLRObjective[T]{loss: contrastive.NTXent[T]{Chunk: cfg.Chunk}}, nil
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
}

package worker

import (
	"context"

	"github.com/infonce/infonce/contrastive"
	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/model"
)

// SigLIP is the objective name of the pairwise sigmoid loss.
const SigLIP = "siglip"

// sigLIPObjective is SigLIP's sigmoid loss between an image and its
// caption (contrastive.SigLIP), with a learnable logit bias, distributed
// by a ring exchange of the text blocks.
type sigLIPObjective[T gemm.Float] struct {
	loss contrastive.SigLIP[T]
	b0   float64
}

func newSigLIP[T gemm.Float](cfg Config) (Objective[T], error) {
	b0 := cfg.SigLIPBiasInit
	if b0 == 0 {
		b0 = DefaultSigLIPBias
	}
	return &sigLIPObjective[T]{b0: b0}, nil
}

// DefaultSigLIPBias is b0 = −10, as the SigLIP paper initialises it.
const DefaultSigLIPBias = -10

// InitLogitBias is b0.
func (o *sigLIPObjective[T]) InitLogitBias() float64 { return o.b0 }

func (*sigLIPObjective[T]) Views() []ViewSpec {
	return []ViewSpec{
		{Name: "image", Tower: model.ModalityImage},
		{Name: "text", Tower: model.ModalityText},
	}
}

func (o *sigLIPObjective[T]) Loss(ctx context.Context, coll contrastive.Collective, in *LossInput[T]) (contrastive.Result[T], error) {
	u, v := &in.Views[0], &in.Views[1]
	return o.loss.Compute(ctx, coll, contrastive.SigLIPInput[T]{
		U: u.Emb, V: v.Emb, D: in.D, Counts: in.Counts, Scale: in.Scale, Bias: in.Bias, DU: u.DEmb, DV: v.DEmb,
	})
}

func init() {
	mustRegister(SigLIP, newSigLIP[float32], newSigLIP[float64])
}

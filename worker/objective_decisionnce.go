package worker

import (
	"context"
	"math"

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
	loss  contrastive.CLIP[T]
	e, de []T
	nu    []float64 // the rows' √(‖Δ‖² + ε²)

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

// decisionEps is the ε of the segment embedding's normalisation, as
// model.L2NormalizeEps.
const decisionEps = 1e-6

func (o *decisionNCEObjective[T]) Loss(ctx context.Context, coll contrastive.Collective, in *LossInput[T]) (contrastive.Result[T], error) {
	u0, v, u1 := &in.Views[0], &in.Views[1], &in.Views[2]
	d, n := in.D, len(u0.Emb)
	o.e, o.de = grow(o.e, n), grow(o.de, n)
	o.nu = grow(o.nu, n/d)
	for i := 0; i < n/d; i++ {
		var ss float64
		for j := range d {
			x := float64(u1.Emb[i*d+j]) - float64(u0.Emb[i*d+j])
			ss += x * x
		}
		nu := math.Sqrt(ss + decisionEps*decisionEps)
		o.nu[i] = nu
		for j := range d {
			o.e[i*d+j] = T((float64(u1.Emb[i*d+j]) - float64(u0.Emb[i*d+j])) / nu)
		}
	}
	r, err := o.loss.Compute(ctx, coll, contrastive.CLIPInput[T]{
		U: o.e, V: v.Emb, D: d, Counts: in.Counts, Scale: in.Scale, IDs: v.Groups, DU: o.de, DV: v.DEmb,
	})
	if err != nil {
		return r, err
	}
	// ∂L/∂Δ = (∂L/∂e − e (e·∂L/∂e)) / ν;  ∂L/∂u_end = ∂L/∂Δ, ∂L/∂u_start = −∂L/∂Δ.
	for i := 0; i < n/d; i++ {
		var dot float64
		for j := range d {
			dot += float64(o.e[i*d+j]) * float64(o.de[i*d+j])
		}
		for j := range d {
			g := (float64(o.de[i*d+j]) - float64(o.e[i*d+j])*dot) / o.nu[i]
			u1.DEmb[i*d+j] = T(g)
			u0.DEmb[i*d+j] = T(-g)
		}
	}
	return r, nil
}

func init() {
	mustRegister(DecisionNCE, newDecisionNCE[float32], newDecisionNCE[float64])
}

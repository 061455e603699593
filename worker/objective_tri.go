package worker

import (
	"context"
	"fmt"

	"github.com/infonce/infonce/contrastive"
	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/model"
)

// Tri is the objective name of the tri-modal loss.
const Tri = "tri"

// triObjective aligns what a robot sees, what it is told and what it does:
//
//	L = a·CLIP(u, v) + b·CLIP(u, w) + c·CLIP(v, w)
//
// with u the image, v the instruction and w the action-chunk embeddings,
// each term the symmetric InfoNCE of contrastive.CLIP over the global
// batch (exact across ranks as CLIP is), sharing the logit scale; the
// masking of false negatives applies to the image–text term, whose
// positives share a caption.
type triObjective[T gemm.Float] struct {
	w          [3]float64
	it, ia, ta contrastive.CLIP[T]
	all        bool   // the masking ids hold for all three terms
	g          [6][]T // the terms' gradients before weighting
}

func newTri[T gemm.Float](cfg Config) (Objective[T], error) {
	w := cfg.TriWeights
	if w == ([3]float64{}) {
		w = [3]float64{1, 1, 1}
	}
	c := contrastive.CLIP[T]{Chunk: cfg.Chunk}
	o := &triObjective[T]{w: w, it: c, ia: c, ta: c}
	o.it.MaskFalseNegatives = cfg.MaskFalseNegatives
	// Ids of a label, task or episode belong to the whole row: they mask
	// the pairs of every term, not only the image–text one.
	o.all = cfg.MaskFalseNegatives && cfg.MaskField != "" && cfg.MaskField != MaskCaption
	o.ia.MaskFalseNegatives, o.ta.MaskFalseNegatives = o.all, o.all
	return o, nil
}

func (*triObjective[T]) Views() []ViewSpec {
	return []ViewSpec{
		{Name: "image", Tower: model.ModalityImage},
		{Name: "text", Tower: model.ModalityText},
		{Name: "action", Tower: model.ModalityAction},
	}
}

func (o *triObjective[T]) Loss(ctx context.Context, coll contrastive.Collective, in *LossInput[T]) (contrastive.Result[T], error) {
	u, v, w := &in.Views[0], &in.Views[1], &in.Views[2]
	for i := range o.g {
		o.g[i] = grow(o.g[i], len(u.Emb))
	}
	terms := []struct {
		name   string
		loss   *contrastive.CLIP[T]
		a, b   *View[T]
		ga, gb []T
		ids    []int32
	}{
		{"image-text", &o.it, u, v, o.g[0], o.g[1], v.Groups},
		{"image-action", &o.ia, u, w, o.g[2], o.g[3], nil},
		{"text-action", &o.ta, v, w, o.g[4], o.g[5], nil},
	}
	if o.all {
		terms[1].ids, terms[2].ids = v.Groups, v.Groups
	}
	var res contrastive.Result[T]
	clear(u.DEmb)
	clear(v.DEmb)
	clear(w.DEmb)
	for k, tm := range terms {
		r, err := tm.loss.Compute(ctx, coll, contrastive.CLIPInput[T]{
			U: tm.a.Emb, V: tm.b.Emb, D: in.D, Counts: in.Counts, Scale: in.Scale, IDs: tm.ids, DU: tm.ga, DV: tm.gb,
		})
		if err != nil {
			return res, fmt.Errorf("%s: %w", tm.name, err)
		}
		wk := T(o.w[k])
		res.Loss += wk * r.Loss
		res.DT += wk * r.DT
		for i := range tm.ga {
			tm.a.DEmb[i] += wk * tm.ga[i]
			tm.b.DEmb[i] += wk * tm.gb[i]
		}
	}
	return res, nil
}

func init() {
	mustRegister(Tri, newTri[float32], newTri[float64])
}

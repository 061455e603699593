package eval

import (
	"math"

	"github.com/infonce/infonce/gemm"
)

// ClassEmbeddings implements CLIP's prompt ensembling: the embedding of
// class c is the mean of its Tm template embeddings, renormalised,
//
//	w_c = Σ_t e_{c,t} / ‖Σ_t e_{c,t}‖,
//
// where templ is C×Tm×d, class-major (row c·Tm + t is template t of class c)
// and dst is C×d. A class whose templates sum to zero gets a zero row.
func ClassEmbeddings[T gemm.Float](templ []T, C, Tm, d int, dst []T) {
	mustShape("templ", templ, C*Tm, d)
	mustShape("dst", dst, C, d)
	sum := make([]float64, d)
	for c := range C {
		clear(sum)
		for t := range Tm {
			row := templ[(c*Tm+t)*d : (c*Tm+t+1)*d]
			for j, v := range row {
				sum[j] += float64(v)
			}
		}
		var nrm float64
		for _, v := range sum {
			nrm += v * v
		}
		nrm = math.Sqrt(nrm)
		out := dst[c*d : (c+1)*d]
		for j, v := range sum {
			if nrm > 0 {
				out[j] = T(v / nrm)
			} else {
				out[j] = 0
			}
		}
	}
}

// ZeroShot classifies each of the n images (img, n×d) by its most similar
// class embedding (class, C×d): ŷ_i = argmax_c ⟨x_i, w_c⟩. It returns the
// top-1 accuracy and the top-5 accuracy (the true class among the five
// highest scores; among all when C < 5). Ties are ordered by class index;
// n = 0 gives NaN.
func ZeroShot[T gemm.Float](img []T, n, d int, labels []int, class []T, C int) (top1, top5 float64) {
	mustShape("img", img, n, d)
	mustShape("class", class, C, d)
	mustLabels(labels, n, C)
	k := min(5, C)
	blk := blockRows(C)
	s := make([]T, min(blk, n)*C)
	hit1, hit5 := 0, 0
	for i0 := 0; i0 < n; i0 += blk {
		b := min(blk, n-i0)
		gemm.Gemm(false, true, b, C, d, 1, img[i0*d:], d, class, d, 0, s, C) // S = X Wᵀ
		for r := range b {
			rk := rank0(s[r*C:(r+1)*C], labels[i0+r])
			if rk == 0 {
				hit1++
			}
			if rk < k {
				hit5++
			}
		}
	}
	return frac(hit1, n), frac(hit5, n)
}

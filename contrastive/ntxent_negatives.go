package contrastive

import (
	"context"
	"fmt"

	"github.com/infonce/infonce/gemm"
)

// computeNegatives is Compute with reweighted or debiased negatives
// (n.Negatives): anchor a's positive is its partner view p(a), its
// negatives the other 2B−2 views, ℓ(a) is the anchor loss of Negatives
// and L = 1/(2B)·Σ_a ℓ(a). With S symmetric, dL/dz_a = s·Σ_m C_am z_m,
// C_am = 1/(2B)·[dℓ(a)/dx_m + dℓ(m)/dx_a] for m ≠ a (0 for m = a): each
// rank forms the gradient terms of its own anchors after pass 1 and the
// 2B of them are all-gathered, as the log-sum-exps are in the plain loss.
// anchor maps a tile row to its global view; fill computes the 2b×w tile
// of logits of the local anchors against views c0..c0+w.
func (n *NTXent[T]) computeNegatives(ctx context.Context, coll Collective, l layout, in NTXentInput[T], chunk int, anchor func(int) int, fill func(c0, w int) []T) (Result[T], error) {
	var res Result[T]
	d, b, B, s := in.D, l.b, l.B, in.Scale
	N := 2 * B
	n.nacc = grow(n.nacc, 2*b)
	n.nt = grow(n.nt, 2*b*ngWidth)
	n.gnt = grow(n.gnt, N*ngWidth)
	beta := n.Negatives.Beta

	// Pass 1: the sums of the local anchors over every other view.
	for k := range n.nacc {
		n.nacc[k].reset()
	}
	for c0 := 0; c0 < N; c0 += chunk {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("ntxent: %w", err)
		}
		w := min(chunk, N-c0)
		tile := fill(c0, w)
		for al := 0; al < 2*b; al++ {
			a := anchor(al)
			acc := &n.nacc[a-2*l.off] // view order, like the statistics
			for jj, x := range tile[al*w : al*w+w] {
				if m := c0 + jj; m != a {
					acc.add(beta, float64(x), m == a^1)
				}
			}
		}
	}
	var loss, dtFloor float64
	for k := range n.nacc {
		lk, fk := n.Negatives.terms(&n.nacc[k], float64(s), n.nt[k*ngWidth:k*ngWidth+ngWidth])
		loss += lk
		dtFloor += fk
	}
	inv := 1 / float64(N)
	res.Loss = T(loss * inv)

	if err := gatherRows(ctx, coll, n.nt, n.gnt, in.Counts, 2*ngWidth, &n.bc); err != nil {
		return res, fmt.Errorf("ntxent: gather negative terms: %w", err)
	}
	term := func(a int) []float64 { return n.gnt[a*ngWidth : a*ngWidth+ngWidth] }

	// Pass 2: C_am and the gradients of the local views.
	var dt float64
	for c0 := 0; c0 < N; c0 += chunk {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("ntxent: %w", err)
		}
		w := min(chunk, N-c0)
		tile := fill(c0, w)
		for al := 0; al < 2*b; al++ {
			a := anchor(al)
			row := tile[al*w : al*w+w]
			for jj, x := range row {
				m := c0 + jj
				if m == a {
					row[jj] = 0
					continue
				}
				sam, p := float64(x), m == a^1
				cam := (n.Negatives.grad(term(a), sam, p) + n.Negatives.grad(term(m), sam, p)) * inv
				dt += cam * sam
				row[jj] = T(cam)
			}
		}
		gb := T(1)
		if c0 == 0 {
			gb = 0
		}
		gemm.Gemm(false, false, b, d, w, s, tile[:b*w], w, n.zg[c0*d:], d, gb, in.DZ1, d)
		gemm.Gemm(false, false, b, d, w, s, tile[b*w:], w, n.zg[c0*d:], d, gb, in.DZ2, d)
	}
	// Σ_{all a} Σ_m C_am S_am counts every G_am S_am twice.
	res.DT = T(dt/2 + dtFloor*inv)
	return res, nil
}

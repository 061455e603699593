package contrastive

import (
	"context"
	"fmt"

	"github.com/infonce/infonce/gemm"
)

// computeNegatives is Compute with reweighted or debiased negatives
// (c.Negatives): with ℓ_row(i) the anchor loss of Negatives over row i of
// S (positives P(i), negatives the other columns) and ℓ_col(j) the same
// over column j,
//
//	L = 1/(2B)·Σ_i ℓ_row(i) + 1/(2B)·Σ_j ℓ_col(j),
//	G_ij = dL/dS_ij = 1/(2B)·[dℓ_row(i)/dx_j + dℓ_col(j)/dx_i].
//
// It keeps the two-pass form of the plain loss: pass 1 streams the owned
// rows and columns of S and accumulates their sums over the global batch,
// each rank turns them into the per-anchor terms of the gradient
// (Negatives.terms), the B row terms and B column terms are all-gathered
// in place of the log-sum-exps, and pass 2 streams S again to form G and
// the gradients of the owned rows.
func (c *CLIP[T]) computeNegatives(ctx context.Context, coll Collective, l layout, in CLIPInput[T], chunk int, ids []int32) (Result[T], error) {
	var res Result[T]
	d, b, B, s := in.D, l.b, l.B, in.Scale
	const w2 = 2 * ngWidth // row terms, then column terms
	c.nacc = grow(c.nacc, 2*b)
	c.nt = grow(c.nt, b*w2)
	c.gnt = grow(c.gnt, B*w2)
	pos := func(i, j int) bool {
		if ids != nil {
			return ids[i] == ids[j]
		}
		return i == j
	}
	beta := c.Negatives.Beta

	// Pass 1: the sums of every owned row and column.
	for k := range c.nacc {
		c.nacc[k].reset()
	}
	for c0 := 0; c0 < B; c0 += chunk {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("clip: %w", err)
		}
		w := min(chunk, B-c0)
		tile := c.tile[:b*w]
		// Rows: tile[i][jj] = S_{off+i, c0+jj}.
		gemm.Gemm(false, true, b, w, d, s, in.U, d, c.uvg[c0*2*d+d:], 2*d, 0, tile, w)
		for i := 0; i < b; i++ {
			a := &c.nacc[i]
			for jj, x := range tile[i*w : i*w+w] {
				a.add(beta, float64(x), pos(l.off+i, c0+jj))
			}
		}
		// Columns: tile[j][ii] = S_{c0+ii, off+j}.
		gemm.Gemm(false, true, b, w, d, s, in.V, d, c.uvg[c0*2*d:], 2*d, 0, tile, w)
		for j := 0; j < b; j++ {
			a := &c.nacc[b+j]
			for ii, x := range tile[j*w : j*w+w] {
				a.add(beta, float64(x), pos(c0+ii, l.off+j))
			}
		}
	}
	var loss, dtFloor float64
	for k := 0; k < b; k++ {
		lr, fr := c.Negatives.terms(&c.nacc[k], float64(s), c.nt[k*w2:k*w2+ngWidth])
		lc, fc := c.Negatives.terms(&c.nacc[b+k], float64(s), c.nt[k*w2+ngWidth:k*w2+w2])
		loss += lr + lc
		dtFloor += fr + fc
	}
	inv := 1 / float64(2*B)
	res.Loss = T(loss * inv)

	if err := gatherRows(ctx, coll, c.nt, c.gnt, in.Counts, w2, &c.bc); err != nil {
		return res, fmt.Errorf("clip: gather negative terms: %w", err)
	}
	rowT := func(i int) []float64 { return c.gnt[i*w2 : i*w2+ngWidth] }
	colT := func(j int) []float64 { return c.gnt[j*w2+ngWidth : j*w2+w2] }

	// Pass 2: G on the owned rows and columns, chunk by chunk.
	dt := dtFloor * inv
	for c0 := 0; c0 < B; c0 += chunk {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("clip: %w", err)
		}
		w := min(chunk, B-c0)
		tile := c.tile[:b*w]
		gb := T(1)
		if c0 == 0 {
			gb = 0
		}
		gemm.Gemm(false, true, b, w, d, s, in.U, d, c.uvg[c0*2*d+d:], 2*d, 0, tile, w)
		for i := 0; i < b; i++ {
			gi, row := l.off+i, tile[i*w:i*w+w]
			for jj, x := range row {
				gj, sij := c0+jj, float64(x)
				p := pos(gi, gj)
				gij := (c.Negatives.grad(rowT(gi), sij, p) + c.Negatives.grad(colT(gj), sij, p)) * inv
				dt += gij * sij
				row[jj] = T(gij)
			}
		}
		gemm.Gemm(false, false, b, d, w, s, tile, w, c.uvg[c0*2*d+d:], 2*d, gb, in.DU, d)

		gemm.Gemm(false, true, b, w, d, s, in.V, d, c.uvg[c0*2*d:], 2*d, 0, tile, w)
		for j := 0; j < b; j++ {
			gj, col := l.off+j, tile[j*w:j*w+w]
			for ii, x := range col {
				gi, sij := c0+ii, float64(x)
				p := pos(gi, gj)
				col[ii] = T((c.Negatives.grad(rowT(gi), sij, p) + c.Negatives.grad(colT(gj), sij, p)) * inv)
			}
		}
		gemm.Gemm(false, false, b, d, w, s, tile, w, c.uvg[c0*2*d:], 2*d, gb, in.DV, d)
	}
	res.DT = T(dt)
	return res, nil
}

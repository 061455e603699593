package contrastive

import (
	"context"
	"fmt"
	"math"

	"github.com/infonce/infonce/gemm"
)

// Result is one rank's share of an objective.
type Result[T gemm.Float] struct {
	Loss T // this rank's share of the global loss; summed over ranks = the loss
	DT   T // this rank's share of dL/dt (s = exp(t)); summed over ranks = dL/dt
	DB   T // this rank's share of dL/db, the logit bias of sigmoid losses (0 for the others)
}

// CLIP is the symmetric InfoNCE objective of CLIP (Radford et al. 2021):
// with S = s·U Vᵀ over the global batch,
//
//	L = 1/(2B)·Σ_i [lse_j S_ij − S_ii] + 1/(2B)·Σ_j [lse_i S_ij − S_jj].
//
// The zero value is ready to use. A CLIP keeps its work buffers between
// calls and must not be used by two goroutines at once.
type CLIP[T gemm.Float] struct {
	// Chunk is the number of columns of S held at once (DefaultChunk if 0).
	// When the whole global batch fits one chunk (B ≤ Chunk), the two
	// b×B blocks of S (owned rows, owned columns) are computed once and
	// kept from the first pass to the second; otherwise both passes stream
	// the chunks and the second computes them again.
	Chunk int
	// MaskFalseNegatives makes every pair with equal caption ids a
	// positive: the row loss is lse_j S_ij − lse_{j∈P(i)} S_ij with
	// P(i) = {j : id_j = id_i}, and likewise for columns.
	MaskFalseNegatives bool
	// Negatives reweights the negatives of both directions (hard
	// negatives, debiasing); the zero value is plain InfoNCE. Under
	// MaskFalseNegatives the positives P(i) are every column with the
	// row's id, and only the others are negatives.
	Negatives Negatives

	uvl    []T       // local rows of U and V side by side: b×2d, row i = [u_i | v_i]
	uvg    []T       // gathered rows of U and V side by side: B×2d
	ids    []int32   // gathered caption ids: B
	tile   []T       // b×chunk logits, then dL/dS; 2·b×B when the blocks are kept
	stats  []float64 // local statistics: b×ns
	accM   []float64 // running maxima of the statistics: b×ns
	accZ   []float64 // running rescaled sums of the statistics: b×ns
	diag   []float64 // S_ii of the owned rows: b
	gstats []float64 // gathered statistics: B×ns
	lse32  []float32 // float32 only: the gathered statistics, ns×B (statistic-major)
	buf32  []float32 // float32 only: one row of G
	bc     []int     // byte counts
	nacc   []negAcc  // Negatives only: sums of the owned rows and columns: 2b
	nt     []float64 // Negatives only: terms of the owned rows and columns: b×2·ngWidth
	gnt    []float64 // Negatives only: gathered terms: B×2·ngWidth
}

// CLIPInput holds one rank's part of a CLIP step.
type CLIPInput[T gemm.Float] struct {
	U, V   []T     // local rows, b×D each, already L2-normalised
	D      int     // embedding dimension
	Counts []int   // rows of every rank, in rank order (the same on every rank)
	Scale  T       // s = exp(t)
	IDs    []int32 // local caption ids, used only with MaskFalseNegatives
	DU, DV []T     // out: dL/dU, dL/dV for the local rows (overwritten)
}

// Statistics per row, in the order they are gathered.
const (
	statRow    = iota // lse_j S_ij of row i
	statCol           // lse_i S_ij of column j
	statRowPos        // lse_{j∈P(i)} S_ij (masking only)
	statColPos        // lse_{i∈P(j)} S_ij (masking only)
)

// Compute returns this rank's share of the CLIP loss and of dL/dt, and
// writes the exact gradients of the global loss with respect to the local
// rows into in.DU and in.DV. Every rank must call it with the same Counts,
// Scale, D and settings.
func (c *CLIP[T]) Compute(ctx context.Context, coll Collective, in CLIPInput[T]) (Result[T], error) {
	var res Result[T]
	if err := ctx.Err(); err != nil {
		return res, err
	}
	l, err := newLayout(coll, in.Counts)
	if err != nil {
		return res, fmt.Errorf("clip: %w", err)
	}
	if err := c.check(l, in); err != nil {
		return res, fmt.Errorf("clip: %w", err)
	}
	chunk, err := chunkOf(c.Chunk, l.B)
	if err != nil {
		return res, fmt.Errorf("clip: %w", err)
	}
	d, b, B := in.D, l.b, l.B
	ns := 2
	if c.MaskFalseNegatives {
		ns = 4
	}
	c.uvl = grow(c.uvl, b*2*d)
	c.uvg = grow(c.uvg, B*2*d)
	// keep: one chunk spans all B columns, so the row block and the
	// column block of pass 1 are whole and pass 2 reuses them.
	keep := chunk >= B
	if keep {
		c.tile = grow(c.tile, 2*b*B)
	} else {
		c.tile = grow(c.tile, b*chunk)
	}
	c.stats = grow(c.stats, b*ns)
	c.accM = grow(c.accM, b*ns)
	c.accZ = grow(c.accZ, b*ns)
	c.diag = grow(c.diag, b)
	c.gstats = grow(c.gstats, B*ns)

	// Step 3 of the design: gather U and V (and the caption ids). U and V
	// travel side by side in one all-gather: every sync of the ranks costs
	// the lead of one over the other, and two back to back cost it twice.
	for i := range b {
		copy(c.uvl[i*2*d:i*2*d+d], in.U[i*d:i*d+d])
		copy(c.uvl[i*2*d+d:i*2*d+2*d], in.V[i*d:i*d+d])
	}
	if err := gatherRows(ctx, coll, c.uvl, c.uvg, in.Counts, 2*d, &c.bc); err != nil {
		return res, fmt.Errorf("clip: gather U and V: %w", err)
	}
	var ids []int32
	if c.MaskFalseNegatives {
		c.ids = grow(c.ids, B)
		if err := gatherRows(ctx, coll, in.IDs, c.ids, in.Counts, 1, &c.bc); err != nil {
			return res, fmt.Errorf("clip: gather ids: %w", err)
		}
		ids = c.ids
	}
	if c.Negatives.On() {
		return c.computeNegatives(ctx, coll, l, in, chunk, ids)
	}

	// Pass 1: log-sum-exps of the owned rows and owned columns.
	if err := c.localStats(ctx, l, in, chunk, ns, ids, keep); err != nil {
		return res, err
	}
	var loss float64
	for il := 0; il < b; il++ {
		st := c.stats[il*ns : il*ns+ns]
		if c.MaskFalseNegatives {
			loss += st[statRow] - st[statRowPos] + st[statCol] - st[statColPos]
		} else {
			loss += st[statRow] + st[statCol] - 2*c.diag[il]
		}
	}
	res.Loss = T(loss / float64(2*B))

	if err := gatherRows(ctx, coll, c.stats, c.gstats, in.Counts, ns, &c.bc); err != nil {
		return res, fmt.Errorf("clip: gather log-sum-exps: %w", err)
	}

	// Pass 2: G = dL/dS on the owned rows and columns, chunk by chunk.
	dt, err := c.gradients(ctx, l, in, chunk, ns, ids, keep)
	if err != nil {
		return res, err
	}
	res.DT = T(dt)
	return res, nil
}

func (c *CLIP[T]) check(l layout, in CLIPInput[T]) error {
	if in.D <= 0 {
		return fmt.Errorf("contrastive: embedding dimension %d", in.D)
	}
	for _, x := range []struct {
		name string
		v    []T
	}{{"U", in.U}, {"V", in.V}, {"DU", in.DU}, {"DV", in.DV}} {
		if err := checkLen(x.name, x.v, l.b, in.D); err != nil {
			return err
		}
	}
	if c.MaskFalseNegatives {
		if err := checkLen("IDs", in.IDs, l.b, 1); err != nil {
			return err
		}
	}
	if err := c.Negatives.Validate(); err != nil {
		return err
	}
	return checkScale(in.Scale)
}

// localStats streams S in column chunks and leaves, for every owned row
// i, lse_j S_ij (and lse_{j∈P(i)} S_ij), and for every owned column j,
// lse_i S_ij (and lse_{i∈P(j)} S_ij) in c.stats, and S_ii of the owned
// rows in c.diag. With keep (a single chunk) the row block is left in
// c.tile[:b·B] and the column block in c.tile[b·B:2·b·B].
func (c *CLIP[T]) localStats(ctx context.Context, l layout, in CLIPInput[T], chunk, ns int, ids []int32, keep bool) error {
	d, b, B, s := in.D, l.b, l.B, in.Scale
	for i := range c.accM {
		c.accM[i], c.accZ[i] = math.Inf(-1), 0
	}
	for c0 := 0; c0 < B; c0 += chunk {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("clip: %w", err)
		}
		w := min(chunk, B-c0)
		tile := c.tile[:b*w]
		// Rows: tile[i][jj] = S_{off+i, c0+jj} = s·u_i·v_{c0+jj}.
		gemm.Gemm(false, true, b, w, d, s, in.U, d, c.uvg[c0*2*d+d:], 2*d, 0, tile, w)
		for i := 0; i < b; i++ {
			row := tile[i*w : i*w+w]
			k := i*ns + statRow
			lseAdd(&c.accM[k], &c.accZ[k], row)
			if ids != nil {
				k = i*ns + statRowPos
				lseAddIf(&c.accM[k], &c.accZ[k], row, ids[c0:c0+w], ids[l.off+i])
			} else if jj := l.off + i - c0; jj >= 0 && jj < w {
				c.diag[i] = float64(row[jj])
			}
		}
		// Columns: tile[j][ii] = S_{c0+ii, off+j} = s·v_j·u_{c0+ii}.
		if keep {
			tile = c.tile[b*w : 2*b*w]
		}
		gemm.Gemm(false, true, b, w, d, s, in.V, d, c.uvg[c0*2*d:], 2*d, 0, tile, w)
		for j := 0; j < b; j++ {
			col := tile[j*w : j*w+w]
			k := j*ns + statCol
			lseAdd(&c.accM[k], &c.accZ[k], col)
			if ids != nil {
				k = j*ns + statColPos
				lseAddIf(&c.accM[k], &c.accZ[k], col, ids[c0:c0+w], ids[l.off+j])
			}
		}
	}
	for k := range c.stats {
		c.stats[k] = lseValue(c.accM[k], c.accZ[k])
	}
	return nil
}

// gradients streams S in column chunks once more and writes
//
//	dL/du_i = s·Σ_j G_ij v_j,  dL/dv_j = s·Σ_i G_ij u_i   (i, j owned),
//
// with G_ij = 1/(2B)·[exp(S_ij − lse_row_i) + exp(S_ij − lse_col_j)
// − 2·[j = i]] (masking: the last term becomes [id_i = id_j]·[exp(S_ij −
// lse_pos_row_i) + exp(S_ij − lse_pos_col_j)]). It returns Σ_{i owned, j}
// G_ij S_ij, this rank's share of dL/dt. With keep, the blocks of S come
// from pass 1 (see localStats) instead of being computed again.
func (c *CLIP[T]) gradients(ctx context.Context, l layout, in CLIPInput[T], chunk, ns int, ids []int32, keep bool) (float64, error) {
	d, b, B, s := in.D, l.b, l.B, in.Scale
	inv := 1 / float64(2*B)
	c.prepare32(B, ns, chunk)
	var dt float64
	for c0 := 0; c0 < B; c0 += chunk {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("clip: %w", err)
		}
		w := min(chunk, B-c0)
		tile := c.tile[:b*w]
		beta := T(1)
		if c0 == 0 {
			beta = 0
		}
		// Owned rows i against columns c0..c0+w.
		if !keep {
			gemm.Gemm(false, true, b, w, d, s, in.U, d, c.uvg[c0*2*d+d:], 2*d, 0, tile, w)
		}
		dt += c.rowsG(tile, l, c0, w, ns, ids, inv)
		gemm.Gemm(false, false, b, d, w, s, tile, w, c.uvg[c0*2*d+d:], 2*d, beta, in.DU, d)

		// Owned columns j against rows c0..c0+w: tile[j][ii] = S_{c0+ii, off+j}.
		if keep {
			tile = c.tile[b*w : 2*b*w]
		} else {
			gemm.Gemm(false, true, b, w, d, s, in.V, d, c.uvg[c0*2*d:], 2*d, 0, tile, w)
		}
		c.colsG(tile, l, c0, w, ns, ids, inv)
		gemm.Gemm(false, false, b, d, w, s, tile, w, c.uvg[c0*2*d:], 2*d, beta, in.DV, d)
	}
	return dt, nil
}

// gij is G_ij·2B of the CLIP gradient in float64 for i, j global, from the
// gathered statistics: exp(S_ij − lse_row_i) + exp(S_ij − lse_col_j) minus
// the positive terms.
func (c *CLIP[T]) gij(sij float64, i, j, ns int, ids []int32) float64 {
	g := c.gstats
	gij := math.Exp(sij-g[i*ns+statRow]) + math.Exp(sij-g[j*ns+statCol])
	if ids != nil {
		if ids[i] == ids[j] {
			gij -= math.Exp(sij-g[i*ns+statRowPos]) + math.Exp(sij-g[j*ns+statColPos])
		}
	} else if i == j {
		gij -= 2
	}
	return gij
}

// rowsG overwrites the b×w tile of logits S_{off+i, c0+jj} with G and
// returns Σ G_ij S_ij over the tile.
func (c *CLIP[T]) rowsG(tile []T, l layout, c0, w, ns int, ids []int32, inv float64) float64 {
	if t, ok := any(tile).([]float32); ok {
		return c.rowsG32(t, l, c0, w, ns, ids, inv)
	}
	var dt float64
	for i := 0; i < l.b; i++ {
		row := tile[i*w : i*w+w]
		for jj, x := range row {
			sij := float64(x)
			gij := c.gij(sij, l.off+i, c0+jj, ns, ids) * inv
			dt += gij * sij
			row[jj] = T(gij)
		}
	}
	return dt
}

// colsG overwrites the b×w tile of logits S_{c0+ii, off+j} (owned column j
// in tile row j) with G.
func (c *CLIP[T]) colsG(tile []T, l layout, c0, w, ns int, ids []int32, inv float64) {
	if t, ok := any(tile).([]float32); ok {
		c.colsG32(t, l, c0, w, ns, ids, inv)
		return
	}
	for j := 0; j < l.b; j++ {
		col := tile[j*w : j*w+w]
		for ii, x := range col {
			col[ii] = T(c.gij(float64(x), c0+ii, l.off+j, ns, ids) * inv)
		}
	}
}

package contrastive

import (
	"context"
	"fmt"
	"math"

	"github.com/infonce/infonce/gemm"
)

// NTXent is the normalised temperature-scaled cross-entropy of SimCLR
// (Chen et al. 2020) over the 2B views z of a global batch of B samples
// (two augmented views each; view a's positive p(a) is the other view of
// the same sample, the other 2B−2 views are its negatives):
//
//	ℓ(a) = −log exp(s·z_a·z_p(a)) / Σ_{m≠a} exp(s·z_a·z_m),   L = 1/(2B)·Σ_a ℓ(a).
//
// The global views are ordered sample by sample, the two views of sample
// i side by side: view a = 2i+v is view v+1 of sample i, and p(a) = a xor 1
// (the order of the views does not change the loss, a sum over all of
// them). The zero value is ready to use; an NTXent keeps its work buffers
// and must not be used by two goroutines at once.
type NTXent[T gemm.Float] struct {
	// Chunk is the number of columns of the logit matrix held at once
	// (DefaultChunk if 0).
	Chunk int
	// Negatives reweights the 2B−2 negatives of every anchor (hard
	// negatives, debiasing); the zero value is plain NT-Xent.
	Negatives Negatives

	zl     []T       // local views side by side: b×2d, row i = [z1_i | z2_i]
	zg     []T       // gathered views side by side: B×2d, that is 2B×d in view order
	tile   []T       // 2b×chunk logits, then coefficients
	stats  []float64 // lse of the local anchors, interleaved (view 1, view 2): b×2
	gstats []float64 // gathered: B×2
	accM   []float64 // running maxima: b×2
	accZ   []float64 // running sums: b×2
	pos    []float64 // positive logits of the local anchors: b×2
	lse32  []float32 // float32 only: lse of every view m in view order: 2B
	buf32  []float32 // float32 only: one row of coefficients
	bc     []int
	nacc   []negAcc  // Negatives only: sums of the local anchors, view order: 2b
	nt     []float64 // Negatives only: terms of the local anchors: 2b×ngWidth
	gnt    []float64 // Negatives only: gathered terms: 2B×ngWidth
}

// NTXentInput holds one rank's part of an NT-Xent step.
type NTXentInput[T gemm.Float] struct {
	Z1, Z2   []T   // the two views of the local samples, b×D each, L2-normalised
	D        int   // embedding dimension
	Counts   []int // samples of every rank, in rank order (the same on every rank)
	Scale    T     // s = exp(t)
	DZ1, DZ2 []T   // out: dL/dZ1, dL/dZ2 for the local samples (overwritten)
}

// Compute returns this rank's share of the NT-Xent loss and of dL/dt, and
// writes the exact gradients of the global loss with respect to the local
// views into in.DZ1 and in.DZ2.
//
// With G_am = 1/(2B)·(softmax_a(m) − [m = p(a)]) for m ≠ a and S symmetric,
// dL/dz_a = s·Σ_m (G_am + G_ma) z_m, so an owned anchor's gradient needs
// the log-sum-exps of every anchor: they are gathered between two
// streaming passes over column chunks, as for CLIP.
func (n *NTXent[T]) Compute(ctx context.Context, coll Collective, in NTXentInput[T]) (Result[T], error) {
	var res Result[T]
	if err := ctx.Err(); err != nil {
		return res, err
	}
	l, err := newLayout(coll, in.Counts)
	if err != nil {
		return res, fmt.Errorf("ntxent: %w", err)
	}
	if in.D <= 0 {
		return res, fmt.Errorf("ntxent: embedding dimension %d", in.D)
	}
	for _, x := range []struct {
		name string
		v    []T
	}{{"Z1", in.Z1}, {"Z2", in.Z2}, {"DZ1", in.DZ1}, {"DZ2", in.DZ2}} {
		if err := checkLen(x.name, x.v, l.b, in.D); err != nil {
			return res, fmt.Errorf("ntxent: %w", err)
		}
	}
	if err := checkScale(in.Scale); err != nil {
		return res, fmt.Errorf("ntxent: %w", err)
	}
	if err := n.Negatives.Validate(); err != nil {
		return res, fmt.Errorf("ntxent: %w", err)
	}
	d, b, B, s := in.D, l.b, l.B, in.Scale
	N := 2 * B // number of views
	chunk, err := chunkOf(n.Chunk, N)
	if err != nil {
		return res, fmt.Errorf("ntxent: %w", err)
	}
	n.zl = grow(n.zl, b*2*d)
	n.zg = grow(n.zg, N*d)
	n.tile = grow(n.tile, 2*b*chunk)
	n.stats = grow(n.stats, 2*b)
	n.gstats = grow(n.gstats, 2*B)
	n.accM = grow(n.accM, 2*b)
	n.accZ = grow(n.accZ, 2*b)
	n.pos = grow(n.pos, 2*b)

	// One all-gather for both views (one sync of the ranks, not two): a
	// sample's two views travel side by side, which is the view order.
	for i := range b {
		copy(n.zl[i*2*d:i*2*d+d], in.Z1[i*d:i*d+d])
		copy(n.zl[i*2*d+d:i*2*d+2*d], in.Z2[i*d:i*d+d])
	}
	if err := gatherRows(ctx, coll, n.zl, n.zg, in.Counts, 2*d, &n.bc); err != nil {
		return res, fmt.Errorf("ntxent: gather Z1 and Z2: %w", err)
	}
	// The 2b local anchors are the tile's rows: first the local view-1
	// rows, then the local view-2 rows; anchor(al) is the global index of
	// tile row al.
	anchor := func(al int) int {
		if al < b {
			return 2 * (l.off + al)
		}
		return 2*(l.off+al-b) + 1
	}
	partner := func(a int) int { return a ^ 1 }
	fill := func(c0, w int) []T {
		tile := n.tile[:2*b*w]
		gemm.Gemm(false, true, b, w, d, s, in.Z1, d, n.zg[c0*d:], d, 0, tile[:b*w], w)
		gemm.Gemm(false, true, b, w, d, s, in.Z2, d, n.zg[c0*d:], d, 0, tile[b*w:], w)
		return tile
	}
	if n.Negatives.On() {
		return n.computeNegatives(ctx, coll, l, in, chunk, anchor, fill)
	}

	// Pass 1: lse_{m≠a} S_am for the owned anchors.
	for k := range n.accM {
		n.accM[k], n.accZ[k] = math.Inf(-1), 0
	}
	for c0 := 0; c0 < N; c0 += chunk {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("ntxent: %w", err)
		}
		w := min(chunk, N-c0)
		tile := fill(c0, w)
		for al := 0; al < 2*b; al++ {
			a := anchor(al)
			// The B×2 statistics are in view order too (sample i's two
			// views side by side): view a's is at a, its local one at k.
			k := a - 2*l.off
			row := tile[al*w : al*w+w]
			lseAddSkip(&n.accM[k], &n.accZ[k], row, a-c0)
			if jj := partner(a) - c0; jj >= 0 && jj < w {
				n.pos[k] = float64(row[jj])
			}
		}
	}
	var loss float64
	for k := range n.stats {
		n.stats[k] = lseValue(n.accM[k], n.accZ[k])
		loss += n.stats[k] - n.pos[k]
	}
	inv := 1 / float64(N)
	res.Loss = T(loss * inv)

	if err := gatherRows(ctx, coll, n.stats, n.gstats, in.Counts, 2, &n.bc); err != nil {
		return res, fmt.Errorf("ntxent: gather log-sum-exps: %w", err)
	}

	// Pass 2: C_am = G_am + G_ma = 1/(2B)·[exp(S_am − lse_a) + exp(S_am −
	// lse_m) − 2·[m = p(a)]] for m ≠ a, 0 for m = a; dL/dz_a = s·Σ_m C_am z_m.
	var dt float64
	f32 := isFloat32[T]()
	if f32 {
		n.lse32 = grow(n.lse32, N)
		for m := range n.lse32 {
			n.lse32[m] = float32(n.gstats[m])
		}
		n.buf32 = grow(n.buf32, min(chunk, N))
	}
	for c0 := 0; c0 < N; c0 += chunk {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("ntxent: %w", err)
		}
		w := min(chunk, N-c0)
		tile := fill(c0, w)
		for al := 0; al < 2*b; al++ {
			a := anchor(al)
			la := n.gstats[a]
			p := partner(a)
			row := tile[al*w : al*w+w]
			if f32 {
				dt += n.coefficients32(any(row).([]float32), c0, a, p, la, n.gstats[p], inv)
				continue
			}
			for jj, x := range row {
				m := c0 + jj
				if m == a {
					row[jj] = 0
					continue
				}
				sam := float64(x)
				cam := math.Exp(sam-la) + math.Exp(sam-n.gstats[m])
				if m == p {
					cam -= 2
				}
				cam *= inv
				dt += cam * sam
				row[jj] = T(cam)
			}
		}
		beta := T(1)
		if c0 == 0 {
			beta = 0
		}
		gemm.Gemm(false, false, b, d, w, s, tile[:b*w], w, n.zg[c0*d:], d, beta, in.DZ1, d)
		gemm.Gemm(false, false, b, d, w, s, tile[b*w:], w, n.zg[c0*d:], d, beta, in.DZ2, d)
	}
	// Σ_{all a} Σ_m C_am S_am = 2·Σ G_am S_am = 2·dL/dt.
	res.DT = T(dt / 2)
	return res, nil
}

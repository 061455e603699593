package contrastive

import (
	"context"
	"fmt"
	"math"

	"github.com/infonce/infonce/gemm"
)

// Shifter is a Collective that can also pass blocks round the ring: Shift
// sends send to the right neighbour and receives the left neighbour's send
// into recv (len(recv) is the left neighbour's len(send)).
type Shifter interface {
	Collective
	Shift(ctx context.Context, send, recv []byte) error
}

// SigLIP is the pairwise sigmoid loss of SigLIP (Zhai et al. 2023): with
// logits z_ij = s·u_i·v_j + b over the global batch and y_ij = 1 for a
// matching pair (i = j), −1 otherwise,
//
//	L = −1/B · Σ_i Σ_j log σ(y_ij z_ij),
//
// s = exp(t) and the bias b both learnable. It needs no normaliser over the
// batch, so it is distributed by a ring exchange (the paper's, and big_vision's):
// each rank keeps its image rows and the text blocks travel round the ring
// in K−1 hops, each with the gradient it gathered on the way; at every hop
// a rank scores its rows against the block in hand. A last hop returns each
// block's gradient to its owner. At most b × b_max logits and two blocks
// are held at once, however many ranks there are.
//
// The zero value is ready to use; a SigLIP keeps its buffers between calls
// and must not be used by two goroutines at once.
type SigLIP[T gemm.Float] struct {
	cur, next []T // the block in hand and the one arriving: b_m×d texts, then their gradient
	tile      []float64
}

// SigLIPInput holds one rank's part of a SigLIP step.
type SigLIPInput[T gemm.Float] struct {
	U, V   []T   // local image and text embeddings, b×D each
	D      int   // embedding dimension
	Counts []int // rows of every rank, in rank order
	Scale  T     // s = exp(t)
	Bias   T     // b
	DU, DV []T   // out: ∂L/∂U and ∂L/∂V of the local rows (overwritten)
}

// Compute returns this rank's share of L, of dL/dt and of dL/db, and writes
// the exact gradients of the local embeddings. coll must be a Shifter when
// it has more than one rank.
func (g *SigLIP[T]) Compute(ctx context.Context, coll Collective, in SigLIPInput[T]) (Result[T], error) {
	var res Result[T]
	l, err := newLayout(coll, in.Counts)
	if err != nil {
		return res, fmt.Errorf("siglip: %w", err)
	}
	for _, x := range []struct {
		name string
		v    []T
	}{{"U", in.U}, {"V", in.V}, {"DU", in.DU}, {"DV", in.DV}} {
		if err := checkLen(x.name, x.v, l.b, in.D); err != nil {
			return res, fmt.Errorf("siglip: %w", err)
		}
	}
	if err := checkScale(in.Scale); err != nil {
		return res, fmt.Errorf("siglip: %w", err)
	}
	sh, ok := coll.(Shifter)
	if !ok && l.size > 1 {
		return res, fmt.Errorf("siglip: the collective of %d ranks cannot pass blocks round the ring", l.size)
	}
	d, K, k := in.D, l.size, l.rank
	bmax := 0
	for _, c := range in.Counts {
		bmax = max(bmax, c)
	}
	g.cur, g.next = grow(g.cur, 2*bmax*d), grow(g.next, 2*bmax*d)
	g.tile = grow(g.tile, max(1, l.b*bmax))
	clear(in.DU)
	// The block in hand: its texts, then the gradient gathered so far.
	m := k
	cur := g.cur[:2*in.Counts[m]*d]
	copy(cur, in.V)
	clear(cur[in.Counts[m]*d:])
	s, bias := float64(in.Scale), float64(in.Bias)
	invB := 1 / float64(l.B)
	var loss, dt, db float64
	for hop := 0; hop < K; hop++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		bm := in.Counts[m]
		v, gv := cur[:bm*d], cur[bm*d:2*bm*d]
		// z_ij = s·u_i·v_j + b; ∂L/∂z_ij = −y_ij σ(−y_ij z_ij)/B.
		for i := 0; i < l.b; i++ {
			ui := in.U[i*d : (i+1)*d]
			for j := 0; j < bm; j++ {
				var dot float64
				vj := v[j*d : (j+1)*d]
				for c := range ui {
					dot += float64(ui[c]) * float64(vj[c])
				}
				y := -1.0
				if m == k && i == j {
					y = 1
				}
				z := s*dot + bias
				loss += invB * softplus(-y*z)
				dz := -y * sigmoid(-y*z) * invB
				g.tile[i*bm+j] = dz
				dt += dz * s * dot
				db += dz
			}
		}
		// ∂L/∂u_i += s Σ_j ∂z_ij v_j;  ∂L/∂v_j += s Σ_i ∂z_ij u_i.
		for i := 0; i < l.b; i++ {
			du := in.DU[i*d : (i+1)*d]
			for j := 0; j < bm; j++ {
				w := s * g.tile[i*bm+j]
				vj := v[j*d : (j+1)*d]
				gj := gv[j*d : (j+1)*d]
				ui := in.U[i*d : (i+1)*d]
				for c := range du {
					du[c] += T(w * float64(vj[c]))
					gj[c] += T(w * float64(ui[c]))
				}
			}
		}
		if hop == K-1 {
			break
		}
		// Pass the block on: the left neighbour's block arrives.
		left := (m + K - 1) % K
		next := g.next[:2*in.Counts[left]*d]
		if err := sh.Shift(ctx, asBytes(cur), asBytes(next)); err != nil {
			return res, fmt.Errorf("siglip: ring exchange: %w", err)
		}
		g.cur, g.next = g.next, g.cur
		cur, m = next, left
	}
	// The block in hand is complete; one more hop returns its gradient to
	// its owner, the right neighbour, and brings this rank's own.
	bm := in.Counts[m]
	if K == 1 {
		copy(in.DV, cur[bm*d:2*bm*d])
	} else if err := sh.Shift(ctx, asBytes(cur[bm*d:2*bm*d]), asBytes(in.DV)); err != nil {
		return res, fmt.Errorf("siglip: gradient return: %w", err)
	}
	res.Loss, res.DT, res.DB = T(loss), T(dt), T(db)
	return res, nil
}

// softplus(x) = log(1 + eˣ), stable for large |x|; −log σ(x) = softplus(−x).
func softplus(x float64) float64 {
	if x > 0 {
		return x + math.Log1p(math.Exp(-x))
	}
	return math.Log1p(math.Exp(x))
}

func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

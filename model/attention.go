package model

import (
	"fmt"
	"math"

	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/vec"
)

// AttentionBlock is the default query and key block size of
// MultiHeadAttention: the scores live in one AttentionBlock×AttentionBlock
// tile at a time.
const AttentionBlock = 64

// MultiHeadAttention is multi-head scaled dot-product self-attention over b
// sequences of L tokens of width D, with H heads of width d_h = D/H:
//
//	[Q K V] = x W_inᵀ + b_in                      (b·L × 3D)
//	O_h     = softmax(Q_h K_hᵀ/√d_h + M) V_h         per sequence and head h
//	y       = [O_1 … O_H] W_outᵀ + b_out
//
// with M = 0, or M_ij = −∞ for j > i when Causal. The parameters are laid out
// as PyTorch's nn.MultiheadAttention names them: InProj.W is in_proj_weight
// (3D×D, the rows of W_q, then W_k, then W_v), InProj.B is in_proj_bias (3D),
// OutProj.W and OutProj.B are out_proj.weight (D×D) and out_proj.bias (D).
// Head h reads columns [h·d_h, (h+1)·d_h) of each of Q, K and V.
//
// The softmax is streamed, as in FlashAttention (Dao et al. 2022): for a
// block of queries, the key blocks are visited in turn with a running row
// maximum m and normaliser ℓ,
//
//	m' = max(m, max_j S_ij),  P_ij = exp(S_ij − m'),
//	ℓ' = e^{m−m'} ℓ + Σ_j P_ij,  A' = e^{m−m'} A + P V_blk,
//
// and O = A/ℓ at the end, so no row of scores is ever held whole. Only the
// row log-sum-exp lse_i = m + log ℓ is kept for Backward, which recomputes
// P_ij = exp(S_ij − lse_i) block by block and, with Δ_i = dO_i·O_i,
//
//	dV += Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − Δ),
//	dQ += dS K/√d_h,  dK += dSᵀ Q/√d_h.
//
// When Causal, key blocks that lie wholly after a query block are skipped,
// and in the diagonal block each row uses only its first i − j₀ + 1 keys.
//
// The b·H (sequence, head) pairs are independent: each reads its own
// columns of Q, K, V and dO and writes its own columns of O, of dQ, dK, dV
// and its own lse, so Forward and Backward split the pairs over the cores
// (parallelFor), each part with its own scratch tiles, and give the same
// bits for any GOMAXPROCS.
type MultiHeadAttention[T gemm.Float] struct {
	D, Heads, L int
	Causal      bool
	// InProj is the fused Q, K, V projection D → 3D; OutProj is D → D.
	InProj, OutProj Linear[T]
	// Block is the query and key block size; 0 means AttentionBlock.
	Block int

	qkv  []T       // Q, K, V of the last Forward (InProj's output)
	o    []T       // b·L × D, the heads' outputs side by side
	lse  []float64 // b × H × L row log-sum-exps
	dO   []T       // ∂L/∂O (b·L × D) of the Backward under way
	dqkv []T       // b·L × 3D
	arenaRef[T]
	b     int
	ready bool

	par                       parallelFor
	scratch                   []attentionScratch[T] // one per part
	forwardBody, backwardBody func(k, lo, hi int)   // method values made once
}

func (a *MultiHeadAttention[T]) setArena(g *gradArena[T]) {
	a.grads = g
	a.InProj.setArena(g)
	a.OutProj.setArena(g)
}

// attentionScratch is the working space of one part of the (sequence,
// head) pairs.
type attentionScratch[T gemm.Float] struct {
	s    []T       // one bq × bk tile of scores / probabilities
	dp   []T       // one bq × bk tile of dP
	acc  []T       // bq × d_h accumulator A
	m, l []float64 // running row maximum and normaliser of a query block
	del  []float64 // Δ of one sequence and head
}

// attentionPartWork is the least work, in multiply-adds of Q Kᵀ, of a part
// of the pairs run on a goroutine of its own: about 2¹⁶ (tens of µs of
// Forward and Backward), well above the few µs of starting a part.
const attentionPartWork = 1 << 16

// pairs returns the number of (sequence, head) pairs, b·H, and the least
// number of them in a part, and grows the scratch space of every part to
// hold tiles of B×B and rows of L.
func (a *MultiHeadAttention[T]) pairs(b int) (n, minPer int) {
	D, L, H, B := a.D, a.L, a.Heads, a.block()
	dh := D / H
	n, minPer = b*H, max(1, attentionPartWork/(L*L*dh))
	P := a.par.numParts(n, minPer)
	for len(a.scratch) < P {
		a.scratch = append(a.scratch, attentionScratch[T]{})
	}
	for k := range a.scratch[:P] {
		sc := &a.scratch[k]
		sc.s = grow(sc.s, B*B)
		sc.dp = grow(sc.dp, B*B)
		sc.acc = grow(sc.acc, B*dh)
		sc.m, sc.l, sc.del = grow(sc.m, B), grow(sc.l, B), grow(sc.del, L)
	}
	if a.forwardBody == nil {
		a.forwardBody, a.backwardBody = a.forwardPairs, a.backwardPairs
	}
	return n, minPer
}

func (a *MultiHeadAttention[T]) name() string {
	return fmt.Sprintf("attention D=%d H=%d L=%d", a.D, a.Heads, a.L)
}

func (a *MultiHeadAttention[T]) block() int {
	if a.Block > 0 {
		return a.Block
	}
	return AttentionBlock
}

func (a *MultiHeadAttention[T]) check() error {
	if a.D <= 0 || a.Heads <= 0 || a.L <= 0 || a.D%a.Heads != 0 {
		return fmt.Errorf("model: %s: want D, H, L > 0 and H dividing D", a.name())
	}
	if a.InProj.In != a.D || a.InProj.Out != 3*a.D || a.OutProj.In != a.D || a.OutProj.Out != a.D {
		return fmt.Errorf("model: %s: projections %d→%d and %d→%d, want %d→%d and %d→%d",
			a.name(), a.InProj.In, a.InProj.Out, a.OutProj.In, a.OutProj.Out, a.D, 3*a.D, a.D, a.D)
	}
	return nil
}

// validKeys is how many keys of the key block starting at ks row i (a query
// index) may attend to: all bk, or under the causal mask those up to i.
func (a *MultiHeadAttention[T]) validKeys(i, ks, bk int) int {
	if !a.Causal {
		return bk
	}
	return max(0, min(bk, i-ks+1))
}

// keyEnd is one past the last key a query block ending at qe may attend to.
func (a *MultiHeadAttention[T]) keyEnd(qe int) int {
	if a.Causal {
		return qe
	}
	return a.L
}

// Forward computes the attention output y (b·L × D) of the b sequences in
// x (b × L × D). InProj keeps a reference to x for Backward.
func (a *MultiHeadAttention[T]) Forward(x []T, b int) ([]T, error) {
	a.ready = false
	if err := a.check(); err != nil {
		return nil, err
	}
	if err := checkBatch(len(x), b, a.L*a.D); err != nil {
		return nil, fmt.Errorf("model: %s: %w", a.name(), err)
	}
	qkv, err := a.InProj.Forward(x, b*a.L)
	if err != nil {
		return nil, fmt.Errorf("model: %s: in_proj: %w", a.name(), err)
	}
	D, L, H := a.D, a.L, a.Heads
	a.qkv, a.b = qkv, b
	a.o = grow(a.o, b*L*D)
	if cap(a.lse) < b*H*L {
		a.lse = make([]float64, b*H*L)
	}
	a.lse = a.lse[:b*H*L]
	n, minPer := a.pairs(b)
	a.par.run(n, minPer, a.forwardBody)
	y, err := a.OutProj.Forward(a.o, b*L)
	if err != nil {
		return nil, fmt.Errorf("model: %s: out_proj: %w", a.name(), err)
	}
	a.ready = true
	return y, nil
}

// forwardPairs is the body of Forward's parallelFor: it computes O_h of the
// (sequence, head) pairs p = n·H + h in [lo, hi) with the scratch of its
// part.
func (a *MultiHeadAttention[T]) forwardPairs(part, lo, hi int) {
	D, L, H, B := a.D, a.L, a.Heads, a.block()
	dh := D / H
	sc := &a.scratch[part]
	scale := T(1 / math.Sqrt(float64(dh)))
	for p := lo; p < hi; p++ {
		n, h := p/H, p%H
		q := a.qkv[n*L*3*D+h*dh:]
		k, v := q[D:], q[2*D:]
		o := a.o[n*L*D+h*dh:]
		lse := a.lse[p*L : (p+1)*L]
		for qs := 0; qs < L; qs += B {
			a.forwardBlock(sc, q, k, v, o, lse, qs, min(qs+B, L), scale)
		}
	}
}

// forwardBlock streams the softmax of queries [qs, qe) of one sequence and
// head over its key blocks and writes O and lse for those rows. q, k and v
// start at the head's column of row 0 and have row stride 3D; o has row
// stride D.
func (a *MultiHeadAttention[T]) forwardBlock(sc *attentionScratch[T], q, k, v, o []T, lse []float64, qs, qe int, scale T) {
	D, B := a.D, a.block()
	dh := D / a.Heads
	bq := qe - qs
	m, l, acc, s := sc.m[:bq], sc.l[:bq], sc.acc[:bq*dh], sc.s
	for r := range m {
		m[r], l[r] = math.Inf(-1), 0
	}
	clear(acc)
	for ks := 0; ks < a.keyEnd(qe); ks += B {
		bk := min(ks+B, a.L) - ks
		// S = Q_blk K_blkᵀ/√d_h (bq × bk, row stride B)
		gemm.Gemm(false, true, bq, bk, dh, scale, q[qs*3*D:], 3*D, k[ks*3*D:], 3*D, 0, s, B)
		for r := 0; r < bq; r++ {
			row := s[r*B : r*B+bk]
			nv := a.validKeys(qs+r, ks, bk)
			clear(row[nv:])
			if nv == 0 {
				continue
			}
			mNew := max(m[r], float64(rowMax(row[:nv])))
			sum := expShift(row[:nv], T(mNew))
			alpha := math.Exp(m[r] - mNew) // 0 on the first block (m = −∞)
			l[r] = alpha*l[r] + float64(sum)
			m[r] = mNew
			// On the first key block A's row is the 0 of clear(acc), which
			// αA leaves as it is.
			if alpha != 1 && ks > 0 {
				scaleRow(acc[r*dh:(r+1)*dh], T(alpha))
			}
		}
		// A += P V_blk
		gemm.Gemm(false, false, bq, dh, bk, 1, s, B, v[ks*3*D:], 3*D, 1, acc, dh)
	}
	for r := 0; r < bq; r++ {
		lse[qs+r] = m[r] + math.Log(l[r])
		// O_i = A_i · (1/ℓ_i)
		scaleTo(o[(qs+r)*D:(qs+r)*D+dh], acc[r*dh:(r+1)*dh], T(1/l[r]))
	}
}

// Backward takes dy = ∂L/∂y (b·L × D), accumulates the gradients of both
// projections and returns ∂L/∂x (nil when InProj.NoInputGrad).
func (a *MultiHeadAttention[T]) Backward(dy []T) ([]T, error) {
	if !a.ready {
		return nil, fmt.Errorf("model: %s: %w", a.name(), errNoForward)
	}
	dO, err := a.OutProj.Backward(dy)
	if err != nil {
		return nil, fmt.Errorf("model: %s: out_proj: %w", a.name(), err)
	}
	D, L, b := a.D, a.L, a.b
	a.dqkv = gradBuf(a.grads, a.dqkv, b*L*3*D) // each pair clears its own columns
	a.dO = dO
	n, minPer := a.pairs(b)
	a.par.run(n, minPer, a.backwardBody)
	a.dO = nil
	a.grads.give(dO) // consumed: dO and dQKV are OutProj's and our own
	dx, err := a.InProj.Backward(a.dqkv)
	if err != nil {
		return nil, fmt.Errorf("model: %s: in_proj: %w", a.name(), err)
	}
	a.grads.give(a.dqkv)
	return dx, nil
}

// backwardPairs is the body of Backward's parallelFor: it accumulates dQ,
// dK and dV of the (sequence, head) pairs p = n·H + h in [lo, hi) with the
// scratch of its part.
func (a *MultiHeadAttention[T]) backwardPairs(part, lo, hi int) {
	D, L, H, B := a.D, a.L, a.Heads, a.block()
	dh := D / H
	sc := &a.scratch[part]
	del := sc.del[:L]
	scale := T(1 / math.Sqrt(float64(dh)))
	for pr := lo; pr < hi; pr++ {
		n, h := pr/H, pr%H
		q := a.qkv[n*L*3*D+h*dh:]
		k, v := q[D:], q[2*D:]
		dq := a.dqkv[n*L*3*D+h*dh:]
		dk, dv := dq[D:], dq[2*D:]
		o, do := a.o[n*L*D+h*dh:], a.dO[n*L*D+h*dh:]
		lse := a.lse[pr*L : (pr+1)*L]
		// Δ_i = dO_i · O_i; dQ_i = dK_i = dV_i = 0
		for i := range del {
			del[i] = dotT(do[i*D:i*D+dh], o[i*D:i*D+dh])
			clear(dq[i*3*D : i*3*D+dh])
			clear(dk[i*3*D : i*3*D+dh])
			clear(dv[i*3*D : i*3*D+dh])
		}
		for qs := 0; qs < L; qs += B {
			qe := min(qs+B, L)
			bq := qe - qs
			for ks := 0; ks < a.keyEnd(qe); ks += B {
				bk := min(ks+B, L) - ks
				p, dp := sc.s, sc.dp
				// P = exp(Q Kᵀ/√d_h − lse), 0 where masked
				gemm.Gemm(false, true, bq, bk, dh, scale, q[qs*3*D:], 3*D, k[ks*3*D:], 3*D, 0, p, B)
				for r := 0; r < bq; r++ {
					row := p[r*B : r*B+bk]
					nv := a.validKeys(qs+r, ks, bk)
					clear(row[nv:])
					expSub(row[:nv], T(lse[qs+r]))
				}
				// dV_blk += Pᵀ dO_blk
				gemm.Gemm(true, false, bk, dh, bq, 1, p, B, do[qs*D:], D, 1, dv[ks*3*D:], 3*D)
				// dP = dO_blk V_blkᵀ
				gemm.Gemm(false, true, bq, bk, dh, 1, do[qs*D:], D, v[ks*3*D:], 3*D, 0, dp, B)
				// dS = P ⊙ (dP − Δ), stored over P
				for r := 0; r < bq; r++ {
					d := T(del[qs+r])
					prow, dprow := p[r*B:r*B+bk], dp[r*B:r*B+bk]
					for j := range prow {
						prow[j] *= dprow[j] - d
					}
				}
				// dQ_blk += dS K_blk/√d_h, dK_blk += dSᵀ Q_blk/√d_h
				gemm.Gemm(false, false, bq, dh, bk, scale, p, B, k[ks*3*D:], 3*D, 1, dq[qs*3*D:], 3*D)
				gemm.Gemm(true, false, bk, dh, bq, scale, p, B, q[qs*3*D:], 3*D, 1, dk[ks*3*D:], 3*D)
			}
		}
	}
}

// rowMax returns max_j x_j (x not empty).
func rowMax[T gemm.Float](x []T) T {
	if x32, ok := any(x).([]float32); ok {
		return T(vec.Max(x32))
	}
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	return m
}

// expShift sets x_j ← exp(x_j − c) in place and returns Σ_j x_j.
func expShift[T gemm.Float](x []T, c T) T {
	if x32, ok := any(x).([]float32); ok {
		vec.ExpScale(x32, x32, float32(c), 1)
		var s float32
		for _, v := range x32 {
			s += v
		}
		return T(s)
	}
	var s T
	for j, v := range x {
		e := T(math.Exp(float64(v - c)))
		x[j] = e
		s += e
	}
	return s
}

// expSub sets x_j ← exp(x_j − c) in place: expShift without the sum.
func expSub[T gemm.Float](x []T, c T) {
	if x32, ok := any(x).([]float32); ok {
		vec.ExpScale(x32, x32, float32(c), 1)
		return
	}
	for j, v := range x {
		x[j] = T(math.Exp(float64(v - c)))
	}
}

// scaleRow sets x ← αx.
func scaleRow[T gemm.Float](x []T, alpha T) {
	if x32, ok := any(x).([]float32); ok {
		vec.Scale(x32, x32, float32(alpha))
		return
	}
	for j := range x {
		x[j] *= alpha
	}
}

// dotT returns x·y, accumulated in float64.
func dotT[T gemm.Float](x, y []T) float64 {
	if x32, ok := any(x).([]float32); ok {
		return vec.Dot(x32, any(y).([]float32))
	}
	var s float64
	for j := range x {
		s += float64(x[j]) * float64(y[j])
	}
	return s
}

package model

import (
	"fmt"

	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/vec"
)

// The layers of this file turn images and id sequences into b sequences of
// L tokens of width D (b × L × D, token-major), add to them, and pool them
// back to one row per sequence.

// PatchEmbed cuts b images (C×H×W, NCHW) into N = (H/P)(W/P) non-overlapping
// P×P patches and maps each to D values: the convolution of kernel = stride =
// P, done as a reshape and a Linear,
//
//	X_p[n, t, (c·P + u)·P + v] = x[n, c, t_y·P + u, t_x·P + v],  t = t_y·(W/P) + t_x,
//	y = X_p W_projᵀ + b_proj                      (b·N × D),
//
// so that Proj.W (D × C·P·P) has the layout of PyTorch's Conv2d weight
// D×C×P×P and y is its output flattened and transposed to tokens.
type PatchEmbed[T gemm.Float] struct {
	C, H, W, P int
	Proj       Linear[T] // C·P·P → D
	// NoInputGrad skips ∂L/∂x (the images are data).
	NoInputGrad bool

	patches, dx []T
	b           int
	ready       bool
}

// Tokens is N, the number of patches of an image.
func (p *PatchEmbed[T]) Tokens() int { return (p.H / p.P) * (p.W / p.P) }

// Forward returns the b × N × D patch embeddings of x (b × C×H×W).
func (p *PatchEmbed[T]) Forward(x []T, b int) ([]T, error) {
	p.ready = false
	if p.P <= 0 || p.C <= 0 || p.H%p.P != 0 || p.W%p.P != 0 || p.H <= 0 || p.W <= 0 || p.Proj.In != p.C*p.P*p.P {
		return nil, fmt.Errorf("model: patch embed %dx%dx%d/%d: want P dividing H and W and Proj.In = C·P·P", p.C, p.H, p.W, p.P)
	}
	if err := checkBatch(len(x), b, p.C*p.H*p.W); err != nil {
		return nil, fmt.Errorf("model: patch embed: %w", err)
	}
	p.patches = grow(p.patches, len(x))
	p.reshape(x, p.patches, b, false)
	p.Proj.NoInputGrad = p.NoInputGrad
	y, err := p.Proj.Forward(p.patches, b*p.Tokens())
	if err != nil {
		return nil, fmt.Errorf("model: patch embed: %w", err)
	}
	p.b, p.ready = b, true
	return y, nil
}

// reshape copies images into patch rows (or, with back, patch rows into
// images): a permutation, so its adjoint is its inverse.
func (p *PatchEmbed[T]) reshape(img, rows []T, b int, back bool) {
	P, gw := p.P, p.W/p.P
	k := p.C * P * P
	for n := 0; n < b; n++ {
		im := img[n*p.C*p.H*p.W:]
		for t := 0; t < p.Tokens(); t++ {
			ty, tx := t/gw, t%gw
			row := rows[(n*p.Tokens()+t)*k:]
			for c := 0; c < p.C; c++ {
				for u := 0; u < P; u++ {
					src := im[(c*p.H+ty*P+u)*p.W+tx*P:][:P]
					dst := row[(c*P+u)*P:][:P]
					if back {
						copy(src, dst)
					} else {
						copy(dst, src)
					}
				}
			}
		}
	}
}

// Backward accumulates Proj's gradients and returns ∂L/∂x (nil when
// NoInputGrad).
func (p *PatchEmbed[T]) Backward(dy []T) ([]T, error) {
	if !p.ready {
		return nil, fmt.Errorf("model: patch embed: %w", errNoForward)
	}
	dp, err := p.Proj.Backward(dy)
	if err != nil {
		return nil, fmt.Errorf("model: patch embed: %w", err)
	}
	if p.NoInputGrad {
		return nil, nil
	}
	p.dx = grow(p.dx, len(dp))
	p.reshape(p.dx, dp, p.b, true)
	return p.dx, nil
}

// PositionEmbedding adds a learned L×D table to every sequence:
// y_n = x_n + E, and ∂L/∂E += Σ_n dy_n, ∂L/∂x = dy.
type PositionEmbedding[T gemm.Float] struct {
	L, D  int
	E, DE []T

	y     []T
	b     int
	ready bool
}

// Forward returns x + E for each of the b sequences of x (b × L × D).
func (p *PositionEmbedding[T]) Forward(x []T, b int) ([]T, error) {
	p.ready = false
	if len(p.E) != p.L*p.D || p.L <= 0 || p.D <= 0 {
		return nil, fmt.Errorf("model: position embedding %d×%d: table has %d elements", p.L, p.D, len(p.E))
	}
	if err := checkBatch(len(x), b, p.L*p.D); err != nil {
		return nil, fmt.Errorf("model: position embedding: %w", err)
	}
	p.y = grow(p.y, len(x))
	copy(p.y, x)
	for n := 0; n < b; n++ {
		addTo(p.y[n*p.L*p.D:(n+1)*p.L*p.D], p.E)
	}
	p.b, p.ready = b, true
	return p.y, nil
}

// Backward accumulates ∂L/∂E += Σ_n dy_n and returns ∂L/∂x = dy itself.
func (p *PositionEmbedding[T]) Backward(dy []T) ([]T, error) {
	if !p.ready {
		return nil, fmt.Errorf("model: position embedding: %w", errNoForward)
	}
	if err := checkGrad(len(dy), p.b*p.L*p.D); err != nil {
		return nil, fmt.Errorf("model: position embedding: %w", err)
	}
	if len(p.DE) != len(p.E) {
		return nil, fmt.Errorf("model: position embedding: %w", errNoGrad)
	}
	for n := 0; n < p.b; n++ {
		addTo(p.DE, dy[n*p.L*p.D:(n+1)*p.L*p.D])
	}
	return dy, nil
}

// ClassToken prepends a learned token c (D) to each sequence of L tokens:
// y_n = [c; x_n] (L+1 tokens), ∂L/∂c += Σ_n dy_n[0], ∂L/∂x_n = dy_n[1:].
type ClassToken[T gemm.Float] struct {
	L, D  int
	C, DC []T

	y, dx []T
	arenaRef[T]
	b     int
	ready bool
}

// Forward returns the b × (L+1) × D sequences [c; x_n].
func (t *ClassToken[T]) Forward(x []T, b int) ([]T, error) {
	t.ready = false
	if len(t.C) != t.D || t.D <= 0 || t.L <= 0 {
		return nil, fmt.Errorf("model: class token: token has %d elements, want D = %d", len(t.C), t.D)
	}
	if err := checkBatch(len(x), b, t.L*t.D); err != nil {
		return nil, fmt.Errorf("model: class token: %w", err)
	}
	D, L := t.D, t.L
	t.y = grow(t.y, b*(L+1)*D)
	for n := 0; n < b; n++ {
		y := t.y[n*(L+1)*D : (n+1)*(L+1)*D]
		copy(y[:D], t.C)
		copy(y[D:], x[n*L*D:(n+1)*L*D])
	}
	t.b, t.ready = b, true
	return t.y, nil
}

// Backward accumulates ∂L/∂c and returns ∂L/∂x, the other L tokens of dy.
func (t *ClassToken[T]) Backward(dy []T) ([]T, error) {
	if !t.ready {
		return nil, fmt.Errorf("model: class token: %w", errNoForward)
	}
	D, L := t.D, t.L
	if err := checkGrad(len(dy), t.b*(L+1)*D); err != nil {
		return nil, fmt.Errorf("model: class token: %w", err)
	}
	if len(t.DC) != D {
		return nil, fmt.Errorf("model: class token: %w", errNoGrad)
	}
	t.dx = gradBuf(t.grads, t.dx, t.b*L*D)
	for n := 0; n < t.b; n++ {
		g := dy[n*(L+1)*D : (n+1)*(L+1)*D]
		addTo(t.DC, g[:D])
		copy(t.dx[n*L*D:(n+1)*L*D], g[D:])
	}
	return t.dx, nil
}

// TokenEmbedding looks up b sequences of L token ids in a Vocab×D table:
// y[n, i] = E[id_{n,i}], and ∂L/∂E[id_{n,i}] += dy[n, i]; the ids have no
// gradient.
type TokenEmbedding[T gemm.Float] struct {
	Vocab, D, L int
	E, DE       []T

	ids   []int32
	y     []T
	b     int
	ready bool
}

// Forward validates the b×L ids and returns their embeddings, b × L × D.
func (e *TokenEmbedding[T]) Forward(ids []int32, b int) ([]T, error) {
	e.ready = false
	if len(e.E) != e.Vocab*e.D || e.D <= 0 || e.L <= 0 {
		return nil, fmt.Errorf("model: token embedding %d×%d: table has %d elements", e.Vocab, e.D, len(e.E))
	}
	if b < 0 || len(ids) != b*e.L {
		return nil, fmt.Errorf("model: token embedding: %d ids for %d sequences of %d", len(ids), b, e.L)
	}
	for j, id := range ids {
		if id < 0 || int(id) >= e.Vocab {
			return nil, fmt.Errorf("model: token embedding: ids[%d] = %d out of range [0, %d)", j, id, e.Vocab)
		}
	}
	if cap(e.ids) < len(ids) {
		e.ids = make([]int32, len(ids))
	}
	e.ids = append(e.ids[:0], ids...)
	d := e.D
	e.y = grow(e.y, len(ids)*d)
	for j, id := range ids {
		copy(e.y[j*d:(j+1)*d], e.E[int(id)*d:(int(id)+1)*d])
	}
	e.b, e.ready = b, true
	return e.y, nil
}

// Backward accumulates ∂L/∂E[id] += dy of every position holding id.
func (e *TokenEmbedding[T]) Backward(dy []T) error {
	if !e.ready {
		return fmt.Errorf("model: token embedding: %w", errNoForward)
	}
	if err := checkGrad(len(dy), len(e.ids)*e.D); err != nil {
		return fmt.Errorf("model: token embedding: %w", err)
	}
	if len(e.DE) != len(e.E) {
		return fmt.Errorf("model: token embedding: %w", errNoGrad)
	}
	d := e.D
	for j, id := range e.ids {
		addTo(e.DE[int(id)*d:(int(id)+1)*d], dy[j*d:(j+1)*d])
	}
	return nil
}

// MeanPool averages each sequence's L tokens, or with ForwardPrefix its
// first n_i tokens: y_i = (1/n_i) Σ_{t<n_i} x[i, t] (b × D), and
// ∂L/∂x[i, t] = dy_i/n_i for t < n_i, 0 after.
type MeanPool[T gemm.Float] struct {
	L, D int

	n     []int32 // n_i of the last Forward
	y, dx []T
	arenaRef[T]
	b     int
	ready bool
}

// Forward returns the b × D means of all L tokens of each sequence of x
// (b × L × D).
func (p *MeanPool[T]) Forward(x []T, b int) ([]T, error) {
	if b >= 0 {
		p.n = grow32(p.n, b)
		for i := range p.n {
			p.n[i] = int32(p.L)
		}
	}
	return p.forward(x, b)
}

// ForwardPrefix returns the b × D means of the first n[i] tokens of each
// sequence i of x (b × L × D); 1 ≤ n[i] ≤ L.
func (p *MeanPool[T]) ForwardPrefix(x []T, n []int32, b int) ([]T, error) {
	p.ready = false
	if len(n) != b {
		return nil, fmt.Errorf("model: mean pool: %d lengths for %d sequences", len(n), b)
	}
	for i, v := range n {
		if v < 1 || int(v) > p.L {
			return nil, fmt.Errorf("model: mean pool: n[%d] = %d out of range [1, %d]", i, v, p.L)
		}
	}
	p.n = append(grow32(p.n, 0), n...)
	return p.forward(x, b)
}

func (p *MeanPool[T]) forward(x []T, b int) ([]T, error) {
	p.ready = false
	if err := checkBatch(len(x), b, p.L*p.D); err != nil || p.L <= 0 {
		return nil, fmt.Errorf("model: mean pool L=%d: %w", p.L, err)
	}
	D, L := p.D, p.L
	p.y = grow(p.y, b*D)
	clear(p.y)
	for i := 0; i < b; i++ {
		y := p.y[i*D : (i+1)*D]
		for t := 0; t < int(p.n[i]); t++ {
			addTo(y, x[(i*L+t)*D:(i*L+t+1)*D])
		}
		scaleRow(y, 1/T(p.n[i]))
	}
	p.b, p.ready = b, true
	return p.y, nil
}

// Backward returns ∂L/∂x[i, t] = dy_i/n_i for t < n_i and 0 after.
func (p *MeanPool[T]) Backward(dy []T) ([]T, error) {
	if !p.ready {
		return nil, fmt.Errorf("model: mean pool: %w", errNoForward)
	}
	if err := checkGrad(len(dy), p.b*p.D); err != nil {
		return nil, fmt.Errorf("model: mean pool: %w", err)
	}
	D, L := p.D, p.L
	p.dx = gradBuf(p.grads, p.dx, p.b*L*D)
	for i := 0; i < p.b; i++ {
		n := int(p.n[i])
		for t := 0; t < n; t++ {
			scaleTo(p.dx[(i*L+t)*D:(i*L+t+1)*D], dy[i*D:(i+1)*D], 1/T(n))
		}
		clear(p.dx[(i*L+n)*D : (i+1)*L*D])
	}
	return p.dx, nil
}

// grow32 is grow for int32 slices.
func grow32(buf []int32, n int) []int32 {
	if cap(buf) < n {
		return make([]int32, n)
	}
	return buf[:n]
}

// PoolAt takes one token of each sequence, y_n = x[n, at_n] (b × D), as
// CLIP's text tower takes the end-of-text token; ∂L/∂x[n, at_n] = dy_n and
// every other token has zero gradient.
type PoolAt[T gemm.Float] struct {
	L, D int

	at    []int32
	y, dx []T
	arenaRef[T]
	b     int
	ready bool
}

// Forward returns x[n, at[n]] for each of the b sequences of x (b × L × D).
func (p *PoolAt[T]) Forward(x []T, at []int32, b int) ([]T, error) {
	p.ready = false
	if err := checkBatch(len(x), b, p.L*p.D); err != nil {
		return nil, fmt.Errorf("model: pool at: %w", err)
	}
	if len(at) != b {
		return nil, fmt.Errorf("model: pool at: %d indices for %d sequences", len(at), b)
	}
	for n, i := range at {
		if i < 0 || int(i) >= p.L {
			return nil, fmt.Errorf("model: pool at: at[%d] = %d out of range [0, %d)", n, i, p.L)
		}
	}
	if cap(p.at) < b {
		p.at = make([]int32, b)
	}
	p.at = append(p.at[:0], at...)
	D, L := p.D, p.L
	p.y = grow(p.y, b*D)
	for n, i := range at {
		copy(p.y[n*D:(n+1)*D], x[(n*L+int(i))*D:])
	}
	p.b, p.ready = b, true
	return p.y, nil
}

// Backward returns ∂L/∂x: dy_n at token at_n of sequence n, 0 elsewhere.
func (p *PoolAt[T]) Backward(dy []T) ([]T, error) {
	if !p.ready {
		return nil, fmt.Errorf("model: pool at: %w", errNoForward)
	}
	if err := checkGrad(len(dy), p.b*p.D); err != nil {
		return nil, fmt.Errorf("model: pool at: %w", err)
	}
	D, L := p.D, p.L
	p.dx = gradBuf(p.grads, p.dx, p.b*L*D)
	clear(p.dx)
	for n, i := range p.at {
		copy(p.dx[(n*L+int(i))*D:(n*L+int(i)+1)*D], dy[n*D:(n+1)*D])
	}
	return p.dx, nil
}

// GlobalAvgPool averages each channel of b feature maps (NCHW, C channels of
// S = H·W positions): y[n, c] = (1/S) Σ_s x[n, c, s], ∂L/∂x[n, c, s] = dy[n, c]/S.
type GlobalAvgPool[T gemm.Float] struct {
	C, S int

	y, dx []T
	arenaRef[T]
	b     int
	ready bool
}

// Forward returns the b × C channel means of x (b × C × S).
func (p *GlobalAvgPool[T]) Forward(x []T, b int) ([]T, error) {
	p.ready = false
	if err := checkBatch(len(x), b, p.C*p.S); err != nil || p.S <= 0 {
		return nil, fmt.Errorf("model: global average pool S=%d: %w", p.S, err)
	}
	p.y = grow(p.y, b*p.C)
	inv := 1 / float64(p.S)
	for j := range p.y {
		p.y[j] = T(float64(sum(x[j*p.S:(j+1)*p.S])) * inv)
	}
	p.b, p.ready = b, true
	return p.y, nil
}

// Backward returns ∂L/∂x[n, c, s] = dy[n, c]/S.
func (p *GlobalAvgPool[T]) Backward(dy []T) ([]T, error) {
	if !p.ready {
		return nil, fmt.Errorf("model: global average pool: %w", errNoForward)
	}
	if err := checkGrad(len(dy), p.b*p.C); err != nil {
		return nil, fmt.Errorf("model: global average pool: %w", err)
	}
	p.dx = gradBuf(p.grads, p.dx, p.b*p.C*p.S)
	inv := 1 / T(p.S)
	for j, g := range dy {
		fill(p.dx[j*p.S:(j+1)*p.S], g*inv)
	}
	return p.dx, nil
}

// Residual is y = x + F(x) for a layer F that keeps the width; Backward
// returns ∂L/∂x = dy + F's ∂L/∂x.
type Residual[T gemm.Float] struct {
	F Layer[T]

	y, dx []T
	ew    elementwise[T]
	arenaRef[T]
	ready bool
}

func (r *Residual[T]) setArena(a *gradArena[T]) { r.grads = a; useArena(r.F, a) }

// Forward returns x + F(x).
func (r *Residual[T]) Forward(x []T, b int) ([]T, error) {
	r.ready = false
	f, err := r.F.Forward(x, b)
	if err != nil {
		return nil, fmt.Errorf("residual: %w", err)
	}
	if len(f) != len(x) {
		return nil, fmt.Errorf("model: residual: branch maps %d elements to %d, want the same shape", len(x), len(f))
	}
	r.y = grow(r.y, len(x))
	r.ew.run(opSum, r.y, x, f)
	r.ready = true
	return r.y, nil
}

// Backward returns dy + ∂F/∂x ᵀ dy, accumulating F's parameter gradients.
func (r *Residual[T]) Backward(dy []T) ([]T, error) {
	if !r.ready {
		return nil, fmt.Errorf("model: residual: %w", errNoForward)
	}
	if err := checkGrad(len(dy), len(r.y)); err != nil {
		return nil, fmt.Errorf("model: residual: %w", err)
	}
	g, err := r.F.Backward(dy)
	if err != nil {
		return nil, fmt.Errorf("residual: %w", err)
	}
	r.dx = gradBuf(r.grads, r.dx, len(dy))
	r.ew.run(opSum, r.dx, dy, g)
	if !sameBuffer(g, dy) { // F wrote g; consumed now
		r.grads.give(g)
	}
	return r.dx, nil
}

// Sequential composes layers: Forward runs them in order, Backward in
// reverse.
type Sequential[T gemm.Float] []Layer[T]

// Forward runs each layer on the previous one's output.
func (s Sequential[T]) Forward(x []T, b int) ([]T, error) {
	var err error
	for i, l := range s {
		if x, err = l.Forward(x, b); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return x, nil
}

// Backward runs each layer's Backward from the last to the first.
func (s Sequential[T]) Backward(dy []T) ([]T, error) {
	var err error
	a, in := s.arena(), dy
	for i := len(s) - 1; i >= 0; i-- {
		g := dy
		if dy, err = s[i].Backward(g); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		// The gradient an inner layer wrote is consumed now; the caller's
		// dy (which a layer such as PositionEmbedding passes on) is not
		// s's to give back.
		if i < len(s)-1 && !sameBuffer(g, in) {
			a.give(g)
		}
	}
	return dy, nil
}

func (s Sequential[T]) setArena(a *gradArena[T]) {
	for _, l := range s {
		useArena(l, a)
	}
}

// arena is the arena of the first of s's layers that has one.
func (s Sequential[T]) arena() *gradArena[T] {
	for _, l := range s {
		if u, ok := l.(arenaUser[T]); ok && u.arena() != nil {
			return u.arena()
		}
	}
	return nil
}

// PerToken applies a row-wise layer F (Linear, LayerNorm, GELU, …) to every
// token of b sequences of L tokens: F sees b·L rows.
type PerToken[T gemm.Float] struct {
	L int
	F Layer[T]
}

// Forward runs F on the b·L tokens of x.
func (p PerToken[T]) Forward(x []T, b int) ([]T, error) { return p.F.Forward(x, b*p.L) }

// Backward is F's Backward.
func (p PerToken[T]) Backward(dy []T) ([]T, error) { return p.F.Backward(dy) }

func (p PerToken[T]) setArena(a *gradArena[T]) { useArena(p.F, a) }
func (p PerToken[T]) arena() *gradArena[T] {
	if u, ok := p.F.(arenaUser[T]); ok {
		return u.arena()
	}
	return nil
}

// addTo sets dst += x.
func addTo[T gemm.Float](dst, x []T) {
	if d32, ok := any(dst).([]float32); ok {
		vec.Add(d32, any(x).([]float32))
		return
	}
	for i, v := range x {
		dst[i] += v
	}
}

// scaleTo sets dst = a·x.
func scaleTo[T gemm.Float](dst, x []T, a T) {
	if d32, ok := any(dst).([]float32); ok {
		vec.Scale(d32, any(x).([]float32), float32(a))
		return
	}
	for i, v := range x {
		dst[i] = a * v
	}
}

package model

import (
	"errors"
	"fmt"
	"math"

	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/vec"
)

// Layer is a map from a batch of b rows to a batch of b rows with an explicit
// backward pass. Forward returns a view into the layer's cache, valid until
// its next Forward; Backward takes dy = ∂L/∂y of the last Forward, accumulates
// the parameter gradients and returns ∂L/∂x (also a view into a cache).
type Layer[T gemm.Float] interface {
	Forward(x []T, b int) ([]T, error)
	Backward(dy []T) ([]T, error)
}

var (
	errNoForward = errors.New("Backward called before Forward")
	errNoGrad    = errors.New("no gradient buffer (parameter-only copy)")
)

// grow returns buf resliced to n elements, reallocating only when its
// capacity is too small.
func grow[T gemm.Float](buf []T, n int) []T {
	if cap(buf) < n {
		return make([]T, n)
	}
	return buf[:n]
}

// checkBatch reports whether x of got elements holds b rows of the width.
func checkBatch(got, b, width int) error {
	if b < 0 {
		return fmt.Errorf("batch size %d is negative", b)
	}
	if got != b*width {
		return fmt.Errorf("input has %d elements, want b×width = %d×%d = %d", got, b, width, b*width)
	}
	return nil
}

// checkGrad reports whether dy has the shape of the last Forward's output.
func checkGrad(got, want int) error {
	if got != want {
		return fmt.Errorf("gradient has %d elements, want %d (the shape of the last Forward output)", got, want)
	}
	return nil
}

// Linear is the affine map y = x Wᵀ + b on a batch: x is b×In, W is Out×In
// (row-major), the bias is Out and y is b×Out. Backward, given dy = ∂L/∂y,
// accumulates ∂L/∂W += dyᵀ x and ∂L/∂bias += Σ_rows dy, and returns
// ∂L/∂x = dy W.
type Linear[T gemm.Float] struct {
	In, Out int
	W, B    []T // weight (Out×In) and bias (Out)
	DW, DB  []T // their gradients; nil for a parameter-only layer
	// NoInputGrad skips ∂L/∂x in Backward, which then returns nil. It is set
	// on the first layer of a tower, whose input is data.
	NoInputGrad bool

	x     []T
	b     int
	y, dx []T
	arenaRef[T]
	ready bool
}

// linearName formats the name of a Linear layer; called only on the error path.
type linearName struct{ in, out int }

func (n linearName) String() string { return fmt.Sprintf("linear %d→%d", n.in, n.out) }

// Forward computes y = x Wᵀ + b for the b rows of x. It keeps a reference
// to x for Backward, so x must not change in between.
func (l *Linear[T]) Forward(x []T, b int) ([]T, error) {
	if len(l.W) != l.Out*l.In || len(l.B) != l.Out || l.In <= 0 || l.Out <= 0 {
		return nil, fmt.Errorf("model: %s: weight has %d and bias %d elements, want %d and %d", linearName{l.In, l.Out}, len(l.W), len(l.B), l.Out*l.In, l.Out)
	}
	if err := checkBatch(len(x), b, l.In); err != nil {
		return nil, fmt.Errorf("model: %s: %w", linearName{l.In, l.Out}, err)
	}
	l.y = grow(l.y, b*l.Out)
	gemm.GemmBias(false, true, b, l.Out, l.In, 1, x, l.In, l.W, l.In, l.B, l.y, l.Out)
	l.x, l.b, l.ready = x, b, true
	return l.y, nil
}

// Backward accumulates ∂L/∂W += dyᵀ x and ∂L/∂b += Σ_rows dy and returns
// ∂L/∂x = dy W (nil when NoInputGrad).
func (l *Linear[T]) Backward(dy []T) ([]T, error) {
	if !l.ready {
		return nil, fmt.Errorf("model: %s: %w", linearName{l.In, l.Out}, errNoForward)
	}
	if err := checkGrad(len(dy), l.b*l.Out); err != nil {
		return nil, fmt.Errorf("model: %s: %w", linearName{l.In, l.Out}, err)
	}
	if len(l.DW) != len(l.W) || len(l.DB) != len(l.B) {
		return nil, fmt.Errorf("model: %s: %w", linearName{l.In, l.Out}, errNoGrad)
	}
	gemm.Gemm(true, false, l.Out, l.In, l.b, 1, dy, l.Out, l.x, l.In, 1, l.DW, l.In)
	if db, ok := any(l.DB).([]float32); ok {
		dy32 := any(dy).([]float32)
		for i := 0; i < l.b; i++ {
			vec.Add(db, dy32[i*l.Out:(i+1)*l.Out])
		}
	} else {
		for i := 0; i < l.b; i++ {
			for j, g := range dy[i*l.Out : (i+1)*l.Out] {
				l.DB[j] += g
			}
		}
	}
	if l.NoInputGrad {
		return nil, nil
	}
	l.dx = gradBuf(l.grads, l.dx, l.b*l.In)
	gemm.Gemm(false, false, l.b, l.In, l.Out, 1, dy, l.Out, l.W, l.In, 0, l.dx, l.In)
	return l.dx, nil
}

// ReLU is y = max(0, x) elementwise on b rows of width N; Backward returns
// ∂L/∂x = dy ⊙ [x > 0].
type ReLU[T gemm.Float] struct {
	N int
	// InPlace writes y over x, as ReLU(inplace=True) does, for an x that
	// nothing reads after this Forward (the output of a GroupNorm, whose
	// Backward reads its own input); Backward reads y from that buffer.
	InPlace bool

	y, dx []T
	ew    elementwise[T]
	arenaRef[T]
	ready bool
}

// Forward computes y = max(0, x).
func (r *ReLU[T]) Forward(x []T, b int) ([]T, error) {
	if err := checkBatch(len(x), b, r.N); err != nil {
		return nil, fmt.Errorf("model: relu: %w", err)
	}
	if r.InPlace {
		r.y = x
	} else {
		r.y = grow(r.y, len(x))
	}
	r.ew.run(opReLU, r.y, x, nil)
	r.ready = true
	return r.y, nil
}

// Backward returns ∂L/∂x = dy ⊙ [x > 0].
func (r *ReLU[T]) Backward(dy []T) ([]T, error) {
	if !r.ready {
		return nil, fmt.Errorf("model: relu: %w", errNoForward)
	}
	if err := checkGrad(len(dy), len(r.y)); err != nil {
		return nil, fmt.Errorf("model: relu: %w", err)
	}
	r.dx = gradBuf(r.grads, r.dx, len(dy))
	r.ew.run(opReLUGrad, r.dx, dy, r.y)
	return r.dx, nil
}

// GELU is the exact Gaussian error linear unit y = x Φ(x), with
// Φ(x) = ½(1 + erf(x/√2)) the standard normal CDF, elementwise on b rows of
// width N. Backward returns ∂L/∂x = dy ⊙ (Φ(x) + x φ(x)), with
// φ(x) = exp(−x²/2)/√(2π).
type GELU[T gemm.Float] struct {
	N int
	// Fast32 computes the float32 path in float32 rather than through
	// math.Erf in float64 (the float64 path ignores it): Forward is
	// vec.GELU and Backward vec.GELUGrad, which recomputes Φ and φ from
	// the x kept by Forward rather than storing them (see package vec for
	// the approximation and its error, below 1.5 float32 ulps of
	// max(1, |x|)), both over chunks of the elements in parallel.
	Fast32 bool

	x, y, dx []T
	erf      []float64 // erf(x/√2) of the last Forward, for Backward
	ew       elementwise[T]
	arenaRef[T]
	ready bool
}

// Forward computes y = x Φ(x). It keeps a reference to x for Backward.
func (g *GELU[T]) Forward(x []T, b int) ([]T, error) {
	if err := checkBatch(len(x), b, g.N); err != nil {
		return nil, fmt.Errorf("model: gelu: %w", err)
	}
	g.y = grow(g.y, len(x))
	if _, ok := any(x).([]float32); ok && g.Fast32 {
		g.ew.run(opGELU, g.y, x, nil)
		g.x, g.ready = x, true
		return g.y, nil
	}
	if cap(g.erf) < len(x) {
		g.erf = make([]float64, len(x))
	}
	g.erf = g.erf[:len(x)]
	for i, v := range x {
		xf := float64(v)
		e := math.Erf(xf / math.Sqrt2)
		g.erf[i] = e
		g.y[i] = T(xf * 0.5 * (1 + e))
	}
	g.x, g.ready = x, true
	return g.y, nil
}

// Backward returns ∂L/∂x = dy ⊙ (Φ(x) + x φ(x)), with erf(x/√2) kept from
// Forward, or on the float32 path with Φ and φ recomputed from x.
func (g *GELU[T]) Backward(dy []T) ([]T, error) {
	if !g.ready {
		return nil, fmt.Errorf("model: gelu: %w", errNoForward)
	}
	if err := checkGrad(len(dy), len(g.y)); err != nil {
		return nil, fmt.Errorf("model: gelu: %w", err)
	}
	g.dx = gradBuf(g.grads, g.dx, len(dy))
	if _, ok := any(g.x).([]float32); ok && g.Fast32 {
		g.ew.run(opGELUGrad, g.dx, dy, g.x)
		return g.dx, nil
	}
	const invSqrt2Pi = 0.3989422804014327 // 1/√(2π)
	for i, v := range g.x {
		xf := float64(v)
		cdf := 0.5 * (1 + g.erf[i])
		pdf := invSqrt2Pi * math.Exp(-0.5*xf*xf)
		g.dx[i] = dy[i] * T(cdf+xf*pdf)
	}
	return g.dx, nil
}

// LayerNormEps is the ε of LayerNorm's variance, as in PyTorch.
const LayerNormEps = 1e-5

// LayerNorm normalises each row of width N and applies a gain and a bias:
//
//	μ = mean(x), σ² = mean((x − μ)²), r = 1/√(σ² + ε), x̂ = (x − μ) r,
//	y = g ⊙ x̂ + β.
//
// Backward accumulates ∂L/∂g += Σ_rows dy ⊙ x̂ and ∂L/∂β += Σ_rows dy, and
// with d = dy ⊙ g returns ∂L/∂x = r (d − mean(d) − x̂ mean(d ⊙ x̂)).
type LayerNorm[T gemm.Float] struct {
	N     int
	Eps   float64 // ε; 0 means LayerNormEps
	Gain  []T     // g, N
	Bias  []T     // β, N
	DGain []T     // ∂L/∂g; nil for a parameter-only layer
	DBias []T     // ∂L/∂β
	// Fast32 computes the float32 path with the kernels of package vec,
	// rows in parallel (see layerNorm32), rather than row by row through
	// float64; it keeps a reference to x for Backward instead of x̂, so x
	// must not change in between. The float64 path ignores it.
	Fast32 bool

	xhat, y, dx []T
	rstd        []float64
	fast        layerNorm32
	arenaRef[T]
	b          int
	ready, fwd bool // fwd: the last Forward took the Fast32 path
}

// Forward computes y = g ⊙ (x − μ)/√(σ² + ε) + β row by row.
func (l *LayerNorm[T]) Forward(x []T, b int) ([]T, error) {
	if len(l.Gain) != l.N || len(l.Bias) != l.N || l.N <= 0 {
		return nil, fmt.Errorf("model: layernorm %d: gain has %d and bias %d elements, want %d", l.N, len(l.Gain), len(l.Bias), l.N)
	}
	if err := checkBatch(len(x), b, l.N); err != nil {
		return nil, fmt.Errorf("model: layernorm: %w", err)
	}
	eps := l.Eps
	if eps == 0 {
		eps = LayerNormEps
	}
	n := l.N
	l.y = grow(l.y, b*n)
	if x32, ok := any(x).([]float32); ok && l.Fast32 {
		l.fast.forward(any(l.y).([]float32), x32, any(l.Gain).([]float32), any(l.Bias).([]float32), b, n, eps)
		l.b, l.ready, l.fwd = b, true, true
		return l.y, nil
	}
	l.xhat = grow(l.xhat, b*n)
	if cap(l.rstd) < b {
		l.rstd = make([]float64, b)
	}
	l.rstd = l.rstd[:b]
	for i := 0; i < b; i++ {
		row := x[i*n : (i+1)*n]
		var mu float64
		for _, v := range row {
			mu += float64(v)
		}
		mu /= float64(n)
		var v2 float64
		for _, v := range row {
			d := float64(v) - mu
			v2 += d * d
		}
		r := 1 / math.Sqrt(v2/float64(n)+eps)
		l.rstd[i] = r
		xh, y := l.xhat[i*n:(i+1)*n], l.y[i*n:(i+1)*n]
		for j, v := range row {
			xh[j] = T((float64(v) - mu) * r)
			y[j] = l.Gain[j]*xh[j] + l.Bias[j]
		}
	}
	l.b, l.ready, l.fwd = b, true, false
	return l.y, nil
}

// Backward accumulates the gain and bias gradients and returns
// ∂L/∂x = r (d − mean(d) − x̂ mean(d ⊙ x̂)), d = dy ⊙ g.
func (l *LayerNorm[T]) Backward(dy []T) ([]T, error) {
	if !l.ready {
		return nil, fmt.Errorf("model: layernorm: %w", errNoForward)
	}
	if err := checkGrad(len(dy), l.b*l.N); err != nil {
		return nil, fmt.Errorf("model: layernorm: %w", err)
	}
	if len(l.DGain) != l.N || len(l.DBias) != l.N {
		return nil, fmt.Errorf("model: layernorm: %w", errNoGrad)
	}
	n := l.N
	l.dx = gradBuf(l.grads, l.dx, l.b*n)
	if l.fwd {
		l.fast.backward(any(l.dx).([]float32), any(dy).([]float32), any(l.DGain).([]float32), any(l.DBias).([]float32))
		return l.dx, nil
	}
	for i := 0; i < l.b; i++ {
		g, xh, dx := dy[i*n:(i+1)*n], l.xhat[i*n:(i+1)*n], l.dx[i*n:(i+1)*n]
		var md, mdx float64 // mean(d), mean(d ⊙ x̂)
		for j := range g {
			l.DBias[j] += g[j]
			l.DGain[j] += g[j] * xh[j]
			d := float64(g[j] * l.Gain[j])
			md += d
			mdx += d * float64(xh[j])
		}
		md /= float64(n)
		mdx /= float64(n)
		r := l.rstd[i]
		for j := range g {
			d := float64(g[j] * l.Gain[j])
			dx[j] = T(r * (d - md - float64(xh[j])*mdx))
		}
	}
	return l.dx, nil
}

// L2NormalizeEps is the ε of L2Normalize.
const L2NormalizeEps = 1e-8

// L2Normalize maps each row of width N onto the unit sphere:
//
//	y = x/ν, ν = √(‖x‖² + ε²),
//
// which is x/‖x‖ for ‖x‖ ≫ ε and stays finite at x = 0. Its exact gradient is
// ∂L/∂x = (dy − y (y·dy))/ν.
type L2Normalize[T gemm.Float] struct {
	N   int
	Eps float64 // ε; 0 means L2NormalizeEps

	y, dx []T
	nu    []float64
	b     int
	ready bool
}

// Forward computes y = x/√(‖x‖² + ε²) row by row.
func (l *L2Normalize[T]) Forward(x []T, b int) ([]T, error) {
	if err := checkBatch(len(x), b, l.N); err != nil {
		return nil, fmt.Errorf("model: l2normalize: %w", err)
	}
	eps := l.Eps
	if eps == 0 {
		eps = L2NormalizeEps
	}
	n := l.N
	l.y = grow(l.y, b*n)
	if cap(l.nu) < b {
		l.nu = make([]float64, b)
	}
	l.nu = l.nu[:b]
	x32, is32 := any(x).([]float32)
	for i := 0; i < b; i++ {
		row := x[i*n : (i+1)*n]
		if is32 {
			// float32: ‖x‖² in float64 and y = x·(1/ν) rounded in float32.
			r32, y32 := x32[i*n:(i+1)*n], any(l.y).([]float32)[i*n:(i+1)*n]
			nu := math.Sqrt(eps*eps + vec.Dot(r32, r32))
			l.nu[i] = nu
			vec.Scale(y32, r32, float32(1/nu))
			continue
		}
		s := eps * eps
		for _, v := range row {
			s += float64(v) * float64(v)
		}
		nu := math.Sqrt(s)
		l.nu[i] = nu
		inv := 1 / nu
		for j, v := range row {
			l.y[i*n+j] = T(float64(v) * inv)
		}
	}
	l.b, l.ready = b, true
	return l.y, nil
}

// Backward returns ∂L/∂x = (dy − y (y·dy))/ν row by row.
func (l *L2Normalize[T]) Backward(dy []T) ([]T, error) {
	if !l.ready {
		return nil, fmt.Errorf("model: l2normalize: %w", errNoForward)
	}
	if err := checkGrad(len(dy), l.b*l.N); err != nil {
		return nil, fmt.Errorf("model: l2normalize: %w", err)
	}
	n := l.N
	l.dx = grow(l.dx, l.b*n)
	if y32, ok := any(l.y).([]float32); ok {
		dy32, dx32 := any(dy).([]float32), any(l.dx).([]float32)
		for i := 0; i < l.b; i++ {
			y, g := y32[i*n:(i+1)*n], dy32[i*n:(i+1)*n]
			vec.ScaleSub(dx32[i*n:(i+1)*n], g, y, float32(vec.Dot(y, g)), float32(1/l.nu[i]))
		}
		return l.dx, nil
	}
	for i := 0; i < l.b; i++ {
		y, g, dx := l.y[i*n:(i+1)*n], dy[i*n:(i+1)*n], l.dx[i*n:(i+1)*n]
		var yg float64
		for j := range y {
			yg += float64(y[j]) * float64(g[j])
		}
		inv := 1 / l.nu[i]
		for j := range y {
			dx[j] = T((float64(g[j]) - float64(y[j])*yg) * inv)
		}
	}
	return l.dx, nil
}

// EmbeddingBag is a mean-pooled bag of embeddings, like PyTorch's
// EmbeddingBag(mode="mean"): bag i is ids[offsets[i]:offsets[i+1]] (the last
// bag runs to len(ids)) and
//
//	y_i = (1/n_i) Σ_{j ∈ bag i} E[ids_j],   n_i = |bag i|,
//
// with y_i = 0 for an empty bag. E is Vocab×Dim, row-major. Backward
// accumulates ∂L/∂E[ids_j] += dy_i/n_i for every j in bag i; the ids have no
// gradient.
type EmbeddingBag[T gemm.Float] struct {
	Vocab, Dim int
	E, DE      []T // table and its gradient (nil for a parameter-only layer)

	ids     []int32
	offsets []int32
	y       []T
	gs      []T // Backward: dy_i/n_i of one bag
	b       int
	ready   bool
}

// Forward validates the bags and computes y_i = mean of E over bag i.
func (e *EmbeddingBag[T]) Forward(ids, offsets []int32, b int) ([]T, error) {
	if len(e.E) != e.Vocab*e.Dim || e.Dim <= 0 {
		return nil, fmt.Errorf("model: embeddingbag %d×%d: table has %d elements, want %d", e.Vocab, e.Dim, len(e.E), e.Vocab*e.Dim)
	}
	if b < 0 {
		return nil, fmt.Errorf("model: embeddingbag: batch size %d is negative", b)
	}
	if len(offsets) != b {
		return nil, fmt.Errorf("model: embeddingbag: %d offsets for %d bags, want one offset per bag", len(offsets), b)
	}
	if b == 0 && len(ids) != 0 {
		return nil, fmt.Errorf("model: embeddingbag: %d ids but no bags", len(ids))
	}
	if b > 0 && offsets[0] != 0 {
		return nil, fmt.Errorf("model: embeddingbag: offsets[0] = %d, want 0", offsets[0])
	}
	for i := 1; i < b; i++ {
		if offsets[i] < offsets[i-1] || int(offsets[i]) > len(ids) {
			return nil, fmt.Errorf("model: embeddingbag: offsets[%d] = %d, want nondecreasing and at most len(ids) = %d", i, offsets[i], len(ids))
		}
	}
	for j, id := range ids {
		if id < 0 || int(id) >= e.Vocab {
			return nil, fmt.Errorf("model: embeddingbag: ids[%d] = %d out of range [0, %d)", j, id, e.Vocab)
		}
	}
	if cap(e.ids) < len(ids) {
		e.ids = make([]int32, len(ids))
	}
	e.ids = append(e.ids[:0], ids...)
	if cap(e.offsets) < b {
		e.offsets = make([]int32, b)
	}
	e.offsets = append(e.offsets[:0], offsets...)
	e.b = b
	d := e.Dim
	e.y = grow(e.y, b*d)
	clear(e.y)
	for i := 0; i < b; i++ {
		lo, hi := e.bag(i)
		if hi == lo {
			continue
		}
		y := e.y[i*d : (i+1)*d]
		inv := 1 / T(hi-lo)
		if y32, ok := any(y).([]float32); ok {
			// The same sums and product as below, vectorised.
			e32 := any(e.E).([]float32)
			for _, id := range e.ids[lo:hi] {
				vec.Add(y32, e32[int(id)*d:(int(id)+1)*d])
			}
			vec.Scale(y32, y32, float32(inv))
			continue
		}
		for _, id := range e.ids[lo:hi] {
			row := e.E[int(id)*d : (int(id)+1)*d]
			for k, v := range row {
				y[k] += v
			}
		}
		for k := range y {
			y[k] *= inv
		}
	}
	e.ready = true
	return e.y, nil
}

func (e *EmbeddingBag[T]) bag(i int) (lo, hi int) {
	lo, hi = int(e.offsets[i]), len(e.ids)
	if i+1 < e.b {
		hi = int(e.offsets[i+1])
	}
	return lo, hi
}

// Backward accumulates ∂L/∂E[ids_j] += dy_i/n_i for every j in bag i.
func (e *EmbeddingBag[T]) Backward(dy []T) error {
	if !e.ready {
		return fmt.Errorf("model: embeddingbag: %w", errNoForward)
	}
	if err := checkGrad(len(dy), e.b*e.Dim); err != nil {
		return fmt.Errorf("model: embeddingbag: %w", err)
	}
	if len(e.DE) != len(e.E) {
		return fmt.Errorf("model: embeddingbag: %w", errNoGrad)
	}
	d := e.Dim
	e.gs = grow(e.gs, d)
	for i := 0; i < e.b; i++ {
		lo, hi := e.bag(i)
		if hi == lo {
			continue
		}
		inv := 1 / T(hi-lo)
		g := dy[i*d : (i+1)*d]
		if gs32, ok := any(e.gs).([]float32); ok {
			// The same products and sums as below, vectorised: dy_i/n_i
			// once per bag, then added to each row of the bag.
			de32 := any(e.DE).([]float32)
			vec.Scale(gs32, any(g).([]float32), float32(inv))
			for _, id := range e.ids[lo:hi] {
				vec.Add(de32[int(id)*d:(int(id)+1)*d], gs32)
			}
			continue
		}
		for _, id := range e.ids[lo:hi] {
			row := e.DE[int(id)*d : (int(id)+1)*d]
			for k, v := range g {
				row[k] += v * inv
			}
		}
	}
	return nil
}

package model

import (
	"math"
	"runtime"
	"sync"

	"github.com/infonce/infonce/vec"
)

// The float32 GELU of the transformer and CNN towers. GELU with Fast32
// computes Φ(x) = ½ erfc(−x/√2) in float32 from the rational Chebyshev
// approximation of erfc of Numerical Recipes (Press et al., §6.2), whose
// fractional error is below 1.2·10⁻⁷ for every z ≥ 0:
//
//	erfc(z) ≈ t · exp(−z² + P(t)),  t = 1/(1 + z/2),
//	P(t) = −1.26551223 + t(1.00002368 + t(0.37409196 + t(0.09678418 + t(−0.18628806
//	       + t(0.27886807 + t(−1.13520398 + t(1.48851587 + t(−0.82215223 + t·0.17087277)))))))),
//	erfc(−z) = 2 − erfc(z),
//
// with the exponentials of a whole chunk taken by package vec's vectorised
// exp, and it keeps Φ(x) and φ(x) = exp(−x²/2)/√(2π) for Backward, which is
// then ∂L/∂x = dy ⊙ (Φ + x φ) with no transcendental function at all. The
// float64 path and a GELU without Fast32 take math.Erf in float64.

// geluChunk is the number of elements whose exponentials go to vec at once.
const geluChunk = 256

// geluFast32 sets y = x Φ(x), cdf = Φ(x) and pdf = φ(x) for float32 x;
// scratch holds 2·geluChunk values.
func geluFast32(y, cdf, pdf, x, scratch []float32) {
	const (
		invSqrt2   = 1 / math.Sqrt2
		invSqrt2Pi = 0.3989422804014327 // 1/√(2π)
	)
	arg, tt := scratch[:geluChunk], scratch[geluChunk:2*geluChunk]
	for lo := 0; lo < len(x); lo += geluChunk {
		hi := min(lo+geluChunk, len(x))
		xs := x[lo:hi]
		a, ts := arg[:len(xs)], tt[:len(xs)]
		for i, v := range xs {
			z := math.Float32frombits(math.Float32bits(v)&0x7fffffff) * invSqrt2 // |x|/√2
			t := 1 / (1 + 0.5*z)
			ts[i] = t
			p := float32(0.17087277)
			p = p*t - 0.82215223
			p = p*t + 1.48851587
			p = p*t - 1.13520398
			p = p*t + 0.27886807
			p = p*t - 0.18628806
			p = p*t + 0.09678418
			p = p*t + 0.37409196
			p = p*t + 1.00002368
			p = p*t - 1.26551223
			a[i] = -z*z + p
		}
		c := cdf[lo:hi]
		vec.ExpScale(c, a, 0, 1) // exp(−z² + P(t))
		ys := y[lo:hi]
		for i, v := range xs {
			h := 0.5 * ts[i] * c[i] // ½ erfc(|x|/√2): Φ(x) for x ≤ 0
			phi := h
			if v > 0 {
				phi = 1 - h // Φ(x) = 1 − ½ erfc(x/√2)
			}
			c[i] = phi
			ys[i] = v * phi
			a[i] = -0.5 * v * v
		}
		vec.ExpScale(pdf[lo:hi], a, 0, invSqrt2Pi) // φ(x)
	}
}

// geluGradFast32 sets dx = dy ⊙ (Φ + x φ).
func geluGradFast32(dx, dy, x, cdf, pdf []float32) {
	for i, v := range x {
		dx[i] = dy[i] * (cdf[i] + v*pdf[i])
	}
}

// geluParallelMin is the fewest elements a goroutine of a parallel GELU
// takes: below it one goroutine does the whole layer.
const geluParallelMin = 64 * geluChunk

// geluParallel runs geluFast32 and geluGradFast32 over up to GOMAXPROCS
// contiguous parts of the elements at once. The parts begin at multiples
// of geluChunk, so each element goes through exactly the arithmetic of
// the serial call: the result is the same bit for bit.
type geluParallel struct {
	parts   []geluPart
	scratch []float32
	wg      sync.WaitGroup
}

// geluPart is one part [lo, hi) of a parallel GELU, handed to a goroutine
// of its own (geluWorker) through a channel, which keeps the call
// allocation-free.
type geluPart struct {
	lo, hi                          int
	grad                            bool
	y, cdf, pdf, x, scratch, dx, dy []float32
	wg                              *sync.WaitGroup
}

var geluHandoff = make(chan *geluPart, 64)

func geluWorker() {
	p := <-geluHandoff
	p.run()
	p.wg.Done()
}

func (p *geluPart) run() {
	lo, hi := p.lo, p.hi
	if p.grad {
		geluGradFast32(p.dx[lo:hi], p.dy[lo:hi], p.x[lo:hi], p.cdf[lo:hi], p.pdf[lo:hi])
		return
	}
	geluFast32(p.y[lo:hi], p.cdf[lo:hi], p.pdf[lo:hi], p.x[lo:hi], p.scratch)
}

// run computes every part, the first on the calling goroutine, and waits
// for the others. set fills a part's buffers.
func (g *geluParallel) run(n int, set func(p *geluPart)) {
	chunks := (n + geluChunk - 1) / geluChunk
	P := max(1, min(runtime.GOMAXPROCS(0), n/geluParallelMin))
	for len(g.parts) < P {
		g.parts = append(g.parts, geluPart{})
	}
	g.scratch = grow(g.scratch, 2*geluChunk*P)
	for k := range P {
		p := &g.parts[k]
		p.lo, p.hi = k*chunks/P*geluChunk, min((k+1)*chunks/P*geluChunk, n)
		p.scratch = g.scratch[2*geluChunk*k : 2*geluChunk*(k+1)]
		p.wg = &g.wg
		set(p)
	}
	g.wg.Add(P - 1)
	for k := 1; k < P; k++ {
		go geluWorker()
		geluHandoff <- &g.parts[k]
	}
	g.parts[0].run()
	g.wg.Wait()
}

// forward is geluFast32(y, cdf, pdf, x) in parallel.
func (g *geluParallel) forward(y, cdf, pdf, x []float32) {
	g.run(len(x), func(p *geluPart) {
		p.grad, p.y, p.cdf, p.pdf, p.x = false, y, cdf, pdf, x
	})
}

// backward is geluGradFast32(dx, dy, x, cdf, pdf) in parallel.
func (g *geluParallel) backward(dx, dy, x, cdf, pdf []float32) {
	g.run(len(x), func(p *geluPart) {
		p.grad, p.dx, p.dy, p.x, p.cdf, p.pdf = true, dx, dy, x, cdf, pdf
	})
}

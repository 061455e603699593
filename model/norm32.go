package model

import (
	"math"

	"github.com/infonce/infonce/vec"
)

// The float32 LayerNorm and GroupNorm of the transformer, ViT and CNN
// towers (LayerNorm.Fast32, GroupNorm.Fast32). Each row of a LayerNorm, or
// each group of one image of a GroupNorm, of m values gets its statistics
// from one pass of vec.Moments shifted by its first value x₀:
//
//	s₁ = Σ (x − x₀),  s₂ = Σ (x − x₀)²  (float64),
//	μ = x₀ + s₁/m,  σ² = s₂/m − (s₁/m)²,  r = 1/√(σ² + ε),
//
// and keeps μ and r as a vec.Norm, x̂ = ((x − μ_hi) − μ_lo)·r in float32,
// with a reference to its input x rather than a copy of x̂: Backward
// recomputes x̂ from x with the same three operations. The input of a
// layer of these towers is the output buffer of the layer before it
// (a Residual, a PositionEmbedding, a Conv2d), which stays as it is until
// that layer's next Forward, hence until after this layer's Backward.
//
// The rows (groups) run in parallel over parallelFor and write disjoint
// outputs, so y and ∂L/∂x are the same bits for every GOMAXPROCS. The
// parameter gradients are sums over all rows: LayerNorm sums them over
// fixed blocks of normRowBlock rows, then adds the blocks' sums in block
// order; GroupNorm keeps Σ dy and Σ dy ⊙ x̂ per image and channel and adds
// them image by image. Neither order depends on how the work was split.

const (
	// normRowBlock is the number of rows of a LayerNorm whose gain and
	// bias gradients are summed together before the blocks are added in
	// order.
	normRowBlock = 64
	// normParallelMin is the fewest values a goroutine of a parallel
	// LayerNorm or GroupNorm takes.
	normParallelMin = 1 << 14
)

// rowNorm returns the vec.Norm of x (μ and r = 1/√(σ² + ε)) from
// vec.Moments shifted by x[0].
func rowNorm(x []float32, eps float64) vec.Norm {
	shift := float64(x[0])
	s1, s2 := vec.Moments(x, shift)
	m := float64(len(x))
	d := s1 / m
	v := max(s2/m-d*d, 0)
	return vec.NewNorm(shift+d, 1/math.Sqrt(v+eps))
}

// layerNorm32 is the state of a LayerNorm's float32 path with Fast32.
type layerNorm32 struct {
	n, b         int
	eps          float64
	gain, bias   []float32
	x, y, dy, dx []float32
	norms        []vec.Norm // one per row
	partial      []float32  // per block of rows: ∂L/∂g (n), then ∂L/∂β (n)

	par                       parallelFor
	forwardBody, backwardBody func(k, lo, hi int)
}

// forward sets y = g ⊙ x̂ + β for the b rows of x.
func (f *layerNorm32) forward(y, x, gain, bias []float32, b, n int, eps float64) {
	if f.forwardBody == nil {
		f.forwardBody, f.backwardBody = f.forwardRows, f.backwardBlocks
	}
	if cap(f.norms) < b {
		f.norms = make([]vec.Norm, b)
	}
	f.norms = f.norms[:b]
	f.y, f.x, f.gain, f.bias, f.b, f.n, f.eps = y, x, gain, bias, b, n, eps
	f.par.run(b, max(1, normParallelMin/n), f.forwardBody)
	f.y = nil // the output is the caller's; keep only x for Backward
}

// forwardRows normalises rows [lo, hi).
func (f *layerNorm32) forwardRows(_, lo, hi int) {
	n := f.n
	for i := lo; i < hi; i++ {
		x := f.x[i*n : (i+1)*n]
		c := rowNorm(x, f.eps)
		f.norms[i] = c
		vec.NormAffine(f.y[i*n:(i+1)*n], x, f.gain, f.bias, c)
	}
}

// backward sets dx = ∂L/∂x for dy and adds the gain and bias gradients to
// dgain and dbias.
func (f *layerNorm32) backward(dx, dy, dgain, dbias []float32) {
	n, b := f.n, f.b
	blocks := (b + normRowBlock - 1) / normRowBlock
	f.partial = grow(f.partial, 2*n*blocks)
	f.dx, f.dy = dx, dy
	f.par.run(blocks, max(1, normParallelMin/(normRowBlock*n)), f.backwardBody)
	for k := range blocks {
		p := f.partial[2*n*k : 2*n*(k+1)]
		vec.Add(dgain, p[:n])
		vec.Add(dbias, p[n:])
	}
	f.dx, f.dy = nil, nil
}

// backwardBlocks computes ∂L/∂x of the rows of blocks [lo, hi) and each
// block's sums Σ dy ⊙ x̂ and Σ dy:
//
//	d = dy ⊙ g,  ∂L/∂x = r (d − mean(d) − x̂ mean(d ⊙ x̂)).
func (f *layerNorm32) backwardBlocks(_, lo, hi int) {
	n := f.n
	inv := 1 / float64(n)
	for k := lo; k < hi; k++ {
		p := f.partial[2*n*k : 2*n*(k+1)]
		clear(p)
		dg, db := p[:n], p[n:]
		for i := k * normRowBlock; i < min((k+1)*normRowBlock, f.b); i++ {
			c := f.norms[i]
			dy, x := f.dy[i*n:(i+1)*n], f.x[i*n:(i+1)*n]
			sd, sdx := vec.NormGradAffine(dg, db, dy, x, f.gain, c)
			vec.NormGradInput(f.dx[i*n:(i+1)*n], dy, x, f.gain, c, float32(sd*inv), float32(sdx*inv))
		}
	}
}

// groupNorm32 is the state of a GroupNorm's float32 path with Fast32.
type groupNorm32 struct {
	c, g, s, b   int
	eps          float64
	gain, bias   []float32
	x, y, dy, dx []float32
	norms        []vec.Norm // one per image and group
	sums         []float64  // per image and channel: Σ dy, Σ dy ⊙ x̂

	par                       parallelFor
	forwardBody, backwardBody func(k, lo, hi int)
}

// forward sets y = γ x̂ + β for every group of the b images of x.
func (f *groupNorm32) forward(y, x, gain, bias []float32, b, c, g, s int, eps float64) {
	if f.forwardBody == nil {
		f.forwardBody, f.backwardBody = f.forwardGroups, f.backwardGroups
	}
	if cap(f.norms) < b*g {
		f.norms = make([]vec.Norm, b*g)
	}
	f.norms = f.norms[:b*g]
	f.y, f.x, f.gain, f.bias, f.b, f.c, f.g, f.s, f.eps = y, x, gain, bias, b, c, g, s, eps
	f.par.run(b*g, max(1, normParallelMin/(c/g*s)), f.forwardBody)
	f.y = nil
}

// forwardGroups normalises groups [lo, hi), numbered image·G + group.
func (f *groupNorm32) forwardGroups(_, lo, hi int) {
	cg, S := f.c/f.g, f.s
	for u := lo; u < hi; u++ {
		off := u * cg * S // (image·C + group·cg)·S
		c := rowNorm(f.x[off:off+cg*S], f.eps)
		f.norms[u] = c
		first := u % f.g * cg // the group's first channel
		for j := range cg {
			lo := off + j*S
			vec.NormAffineScalar(f.y[lo:lo+S], f.x[lo:lo+S], c, f.gain[first+j], f.bias[first+j])
		}
	}
}

// backward sets dx = ∂L/∂x for dy and adds the gain and bias gradients,
// image by image, to dgain and dbias.
func (f *groupNorm32) backward(dx, dy, dgain, dbias []float32) {
	b, C := f.b, f.c
	if cap(f.sums) < 2*b*C {
		f.sums = make([]float64, 2*b*C)
	}
	f.sums = f.sums[:2*b*C]
	f.dx, f.dy = dx, dy
	f.par.run(b*f.g, max(1, normParallelMin/(C/f.g*f.s)), f.backwardBody)
	for n := range b {
		for ch := range C {
			dbias[ch] += float32(f.sums[2*(n*C+ch)])
			dgain[ch] += float32(f.sums[2*(n*C+ch)+1])
		}
	}
	f.dx, f.dy = nil, nil
}

// backwardGroups computes ∂L/∂x of groups [lo, hi) and the channels' Σ dy
// and Σ dy ⊙ x̂:
//
//	d = γ dy,  ∂L/∂x = r_g (d − mean_g(d) − x̂ mean_g(d ⊙ x̂)).
func (f *groupNorm32) backwardGroups(_, lo, hi int) {
	cg, S := f.c/f.g, f.s
	inv := 1 / float64(cg*S)
	for u := lo; u < hi; u++ {
		off := u * cg * S
		c := f.norms[u]
		first := u % f.g * cg               // the group's first channel
		sums := f.sums[2*u*cg : 2*(u+1)*cg] // u·cg = image·C + first
		var md, mdx float64                 // mean_g(d), mean_g(d ⊙ x̂)
		for j := range cg {
			lo := off + j*S
			sdy, sdyx := vec.NormGradSums(f.dy[lo:lo+S], f.x[lo:lo+S], c)
			sums[2*j], sums[2*j+1] = sdy, sdyx
			gain := float64(f.gain[first+j])
			md += gain * sdy
			mdx += gain * sdyx
		}
		md *= inv
		mdx *= inv
		for j := range cg {
			lo := off + j*S
			vec.NormGradInputScalar(f.dx[lo:lo+S], f.dy[lo:lo+S], f.x[lo:lo+S], c, f.gain[first+j], float32(md), float32(mdx))
		}
	}
}

package model

import (
	"fmt"

	"github.com/infonce/infonce/gemm"
)

// Conv2d is a 2-D convolution (cross-correlation, as PyTorch's nn.Conv2d)
// over b images in NCHW order, Cin×H×W each, with Cout filters of KH×KW,
// one stride and one zero padding for both axes:
//
//	y[n, o, i, j] = bias[o] + Σ_{c,u,v} W[o, c, u, v] · x[n, c, i·s − p + u, j·s − p + v],
//
// Ho = (H + 2p − KH)/s + 1 and Wo likewise. Weight is Cout×Cin×KH×KW as
// PyTorch's weight, bias Cout. It runs as im2col over the GEMM: for each image
// the columns X_col (Cin·KH·KW × Ho·Wo) hold the receptive fields, and
//
//	Y = W X_col + bias,   ∂L/∂W += dY X_colᵀ,   ∂L/∂bias += Σ_{i,j} dY,
//	∂L/∂X_col = Wᵀ dY, scattered back onto the image by col2im (∂L/∂x).
//
// The columns of one image are rebuilt in Backward rather than kept for the
// whole batch, so the layer holds one image's X_col at a time. A 1×1 kernel
// of stride 1 and no padding uses x itself as X_col.
type Conv2d[T gemm.Float] struct {
	Cin, Cout, H, W int
	KH, KW          int
	Stride, Pad     int // Stride 0 means 1
	Weight, Bias    []T // Cout×Cin×KH×KW and Cout; a nil Bias means none (before a norm)
	DWeight, DBias  []T // gradients; nil for a parameter-only layer
	// NoInputGrad skips ∂L/∂x, as on the stem whose input is data.
	NoInputGrad bool

	x         []T
	cols, dcl []T
	y, dx     []T
	grads     *gradArena[T]
	b         int
	ready     bool

	// im2col and col2im run over rows of X_col and over input channels
	// in parallel: their bodies (made once) read the operands of the
	// current call from arg.
	par                    parallelFor
	im2colBody, col2imBody func(k, lo, hi int)
	arg                    struct{ x, cols, dx, dcols []T }
}

func (c *Conv2d[T]) setArena(a *gradArena[T]) { c.grads = a }
func (c *Conv2d[T]) arena() *gradArena[T]     { return c.grads }

func (c *Conv2d[T]) stride() int { return max(c.Stride, 1) }

// OutH and OutW are the output height Ho and width Wo.
func (c *Conv2d[T]) OutH() int { return (c.H+2*c.Pad-c.KH)/c.stride() + 1 }

// OutW is the output width Wo.
func (c *Conv2d[T]) OutW() int { return (c.W+2*c.Pad-c.KW)/c.stride() + 1 }

func (c *Conv2d[T]) name() string {
	return fmt.Sprintf("conv %d→%d %dx%d/%d", c.Cin, c.Cout, c.KH, c.KW, c.stride())
}

// direct reports whether x is its own X_col (1×1, stride 1, no padding).
func (c *Conv2d[T]) direct() bool {
	return c.KH == 1 && c.KW == 1 && c.stride() == 1 && c.Pad == 0
}

// Forward computes y (b × Cout×Ho×Wo) for x (b × Cin×H×W). It keeps a
// reference to x for Backward.
func (c *Conv2d[T]) Forward(x []T, b int) ([]T, error) {
	c.ready = false
	if c.Cin <= 0 || c.Cout <= 0 || c.KH <= 0 || c.KW <= 0 || c.Pad < 0 || c.Stride < 0 || c.OutH() <= 0 || c.OutW() <= 0 {
		return nil, fmt.Errorf("model: %s: invalid shape for a %dx%d input with padding %d", c.name(), c.H, c.W, c.Pad)
	}
	k := c.Cin * c.KH * c.KW
	if len(c.Weight) != c.Cout*k || (c.Bias != nil && len(c.Bias) != c.Cout) {
		return nil, fmt.Errorf("model: %s: weight has %d and bias %d elements, want %d and %d", c.name(), len(c.Weight), len(c.Bias), c.Cout*k, c.Cout)
	}
	in := c.Cin * c.H * c.W
	if err := checkBatch(len(x), b, in); err != nil {
		return nil, fmt.Errorf("model: %s: %w", c.name(), err)
	}
	hw := c.OutH() * c.OutW()
	c.y = grow(c.y, b*c.Cout*hw)
	if !c.direct() {
		c.cols = grow(c.cols, k*hw)
	}
	for n := 0; n < b; n++ {
		cols := c.im2col(x[n*in : (n+1)*in])
		y := c.y[n*c.Cout*hw : (n+1)*c.Cout*hw]
		var beta T // Y = W X_col (+ bias)
		if c.Bias != nil {
			for o, bo := range c.Bias {
				fill(y[o*hw:(o+1)*hw], bo)
			}
			beta = 1
		}
		gemm.Gemm(false, false, c.Cout, hw, k, 1, c.Weight, k, cols, hw, beta, y, hw)
	}
	c.x, c.b, c.ready = x, b, true
	return c.y, nil
}

// convParallelMin is the fewest elements of X_col a goroutine of im2col or
// col2im takes: below it the image stays on one goroutine.
const convParallelMin = 1 << 14

// im2col returns X_col of one image: row (ci·KH + u)·KW + v, column i·Wo + j
// holds x[ci, i·s − p + u, j·s − p + v], or 0 in the padding. The rows are
// filled in parallel; each is a copy, so the result does not depend on the
// split.
func (c *Conv2d[T]) im2col(x []T) []T {
	if c.direct() {
		return x
	}
	if c.im2colBody == nil {
		c.im2colBody, c.col2imBody = c.im2colRows, c.col2imChannels
	}
	hw := c.OutH() * c.OutW()
	c.arg.x, c.arg.cols = x, c.cols
	c.par.run(c.Cin*c.KH*c.KW, convParallelMin/hw, c.im2colBody)
	c.arg.x, c.arg.cols = nil, nil
	return c.cols
}

// im2colRows fills rows [lo, hi) of X_col from c.arg.x into c.arg.cols.
func (c *Conv2d[T]) im2colRows(_, lo, hi int) {
	ho, wo, s := c.OutH(), c.OutW(), c.stride()
	x, cols := c.arg.x, c.arg.cols
	for r := lo; r < hi; r++ {
		ci, u, v := r/(c.KH*c.KW), r/c.KW%c.KH, r%c.KW
		plane := x[ci*c.H*c.W : (ci+1)*c.H*c.W]
		dst := cols[r*ho*wo : (r+1)*ho*wo]
		if c.same() {
			c.im2colSame(dst, plane, u, v)
			continue
		}
		jlo, jhi := c.validCols(v, wo)
		for i := 0; i < ho; i++ {
			yy := i*s - c.Pad + u
			drow := dst[i*wo : (i+1)*wo]
			if yy < 0 || yy >= c.H || jlo >= jhi {
				clear(drow)
				continue
			}
			clear(drow[:jlo])
			clear(drow[jhi:])
			src := plane[yy*c.W : (yy+1)*c.W]
			if s == 1 {
				copy(drow[jlo:jhi], src[jlo-c.Pad+v:])
				continue
			}
			for j, xx := jlo, jlo*s-c.Pad+v; j < jhi; j, xx = j+1, xx+s {
				drow[j] = src[xx]
			}
		}
	}
}

// same reports whether the convolution keeps the image's size at stride 1
// (Ho = H, Wo = W). Row (ci, u, v) of X_col is then channel ci's plane
// shifted by δ = (u − p)·W + (v − p) in its flat index, x_col[i·W + j] =
// x[i·W + j + δ], apart from the positions whose input lies in the
// padding: whole output rows outside validRows and columns outside
// validCols, where the flat shift would wrap to the neighbouring row.
func (c *Conv2d[T]) same() bool {
	return c.stride() == 1 && c.OutH() == c.H && c.OutW() == c.W
}

// validRows is the range [ilo, ihi) of output rows i whose input row
// i − p + u lies inside the image (stride 1).
func (c *Conv2d[T]) validRows(u int) (ilo, ihi int) {
	ilo = max(0, c.Pad-u)
	ihi = min(c.H, c.H+c.Pad-u)
	return ilo, max(ilo, ihi)
}

// im2colSame fills row (ci, u, v) of X_col of a same convolution with one
// copy of the shifted plane, then zeroes the positions in the padding.
func (c *Conv2d[T]) im2colSame(dst, plane []T, u, v int) {
	W, n := c.W, c.H*c.W
	ilo, ihi := c.validRows(u)
	jlo, jhi := c.validCols(v, W)
	d := (u-c.Pad)*W + v - c.Pad
	clear(dst[:ilo*W])
	clear(dst[ihi*W:])
	// Positions whose source would fall before 0 or past n are columns
	// outside validCols, zeroed below.
	if a, b := max(ilo*W, -d), min(ihi*W, n-d); a < b {
		copy(dst[a:b], plane[a+d:b+d])
	}
	for i := ilo; i < ihi; i++ {
		row := dst[i*W : (i+1)*W]
		for j := 0; j < jlo; j++ {
			row[j] = 0
		}
		for j := jhi; j < W; j++ {
			row[j] = 0
		}
	}
}

// col2imSame adds row (ci, u, v) of ∂L/∂X_col onto channel ci's plane of
// a same convolution, the adjoint of im2colSame: it zeroes the positions
// of src in the padding (src is scratch) and adds the rest in one shifted
// pass. Every element of the plane gets the same additions in the same
// order as row by row, and adding those zeros changes no bits (the plane
// starts at +0 and a sum that starts at +0 is never −0).
func (c *Conv2d[T]) col2imSame(plane, src []T, u, v int) {
	W, n := c.W, c.H*c.W
	ilo, ihi := c.validRows(u)
	jlo, jhi := c.validCols(v, W)
	d := (u-c.Pad)*W + v - c.Pad
	for i := ilo; i < ihi; i++ {
		row := src[i*W : (i+1)*W]
		for j := 0; j < jlo; j++ {
			row[j] = 0
		}
		for j := jhi; j < W; j++ {
			row[j] = 0
		}
	}
	if a, b := max(ilo*W, -d), min(ihi*W, n-d); a < b {
		addTo(plane[a+d:b+d], src[a:b])
	}
}

// validCols is the range [jlo, jhi) of output columns j whose input column
// j·s − p + v lies inside the image, for kernel column v.
func (c *Conv2d[T]) validCols(v, wo int) (jlo, jhi int) {
	s := c.stride()
	// j·s − p + v ≥ 0  ⇔  j ≥ ⌈(p − v)/s⌉;  j·s − p + v ≤ W − 1  ⇔  j ≤ ⌊(W − 1 + p − v)/s⌋.
	if d := c.Pad - v; d > 0 {
		jlo = (d + s - 1) / s
	}
	if d := c.W - 1 + c.Pad - v; d >= 0 {
		jhi = min(wo, d/s+1)
	}
	return jlo, max(jlo, jhi)
}

// col2im sets dx to ∂L/∂x of one image, the adjoint of im2col applied to
// ∂L/∂X_col. The input channels run in parallel: channel ci gathers from
// its own KH·KW rows of X_col only, in the same order for any split.
func (c *Conv2d[T]) col2im(dx, dcols []T) {
	if c.im2colBody == nil {
		c.im2colBody, c.col2imBody = c.im2colRows, c.col2imChannels
	}
	hw := c.OutH() * c.OutW()
	c.arg.dx, c.arg.dcols = dx, dcols
	c.par.run(c.Cin, convParallelMin/(hw*c.KH*c.KW), c.col2imBody)
	c.arg.dx, c.arg.dcols = nil, nil
}

// col2imChannels clears the planes of input channels [lo, hi) of c.arg.dx
// and adds their rows of c.arg.dcols onto them.
func (c *Conv2d[T]) col2imChannels(_, lo, hi int) {
	ho, wo, s := c.OutH(), c.OutW(), c.stride()
	dx, dcols := c.arg.dx, c.arg.dcols
	for ci := lo; ci < hi; ci++ {
		plane := dx[ci*c.H*c.W : (ci+1)*c.H*c.W]
		clear(plane)
		r := ci * c.KH * c.KW
		for u := 0; u < c.KH; u++ {
			for v := 0; v < c.KW; v++ {
				src := dcols[r*ho*wo : (r+1)*ho*wo]
				r++
				if c.same() {
					c.col2imSame(plane, src, u, v)
					continue
				}
				jlo, jhi := c.validCols(v, wo)
				for i := 0; i < ho; i++ {
					yy := i*s - c.Pad + u
					if yy < 0 || yy >= c.H || jlo >= jhi {
						continue
					}
					drow := plane[yy*c.W : (yy+1)*c.W]
					g := src[i*wo+jlo : i*wo+jhi]
					if s == 1 {
						addTo(drow[jlo-c.Pad+v:jhi-c.Pad+v], g)
						continue
					}
					for k, xx := 0, jlo*s-c.Pad+v; k < len(g); k, xx = k+1, xx+s {
						drow[xx] += g[k]
					}
				}
			}
		}
	}
}

// Backward accumulates ∂L/∂W += dY X_colᵀ and ∂L/∂bias += Σ dY per image and
// returns ∂L/∂x = col2im(Wᵀ dY) (nil when NoInputGrad).
func (c *Conv2d[T]) Backward(dy []T) ([]T, error) {
	if !c.ready {
		return nil, fmt.Errorf("model: %s: %w", c.name(), errNoForward)
	}
	hw := c.OutH() * c.OutW()
	if err := checkGrad(len(dy), c.b*c.Cout*hw); err != nil {
		return nil, fmt.Errorf("model: %s: %w", c.name(), err)
	}
	if len(c.DWeight) != len(c.Weight) || (c.Bias != nil && len(c.DBias) != len(c.Bias)) {
		return nil, fmt.Errorf("model: %s: %w", c.name(), errNoGrad)
	}
	k, in := c.Cin*c.KH*c.KW, c.Cin*c.H*c.W
	if !c.NoInputGrad {
		c.dx = gradBuf(c.grads, c.dx, c.b*in)
		if !c.direct() {
			c.dcl = grow(c.dcl, k*hw)
		}
	}
	for n := 0; n < c.b; n++ {
		g := dy[n*c.Cout*hw : (n+1)*c.Cout*hw]
		if c.Bias != nil {
			for o := range c.DBias {
				c.DBias[o] += sum(g[o*hw : (o+1)*hw])
			}
		}
		cols := c.im2col(c.x[n*in : (n+1)*in])
		gemm.Gemm(false, true, c.Cout, k, hw, 1, g, hw, cols, hw, 1, c.DWeight, k)
		if c.NoInputGrad {
			continue
		}
		dx := c.dx[n*in : (n+1)*in]
		if c.direct() {
			gemm.Gemm(true, false, k, hw, c.Cout, 1, c.Weight, k, g, hw, 0, dx, hw)
			continue
		}
		gemm.Gemm(true, false, k, hw, c.Cout, 1, c.Weight, k, g, hw, 0, c.dcl, hw)
		c.col2im(dx, c.dcl)
	}
	if c.NoInputGrad {
		return nil, nil
	}
	return c.dx, nil
}

// fill sets every element of x to v.
func fill[T gemm.Float](x []T, v T) {
	for i := range x {
		x[i] = v
	}
}

// sum returns Σ x_i, accumulated in float64.
func sum[T gemm.Float](x []T) T {
	var s float64
	for _, v := range x {
		s += float64(v)
	}
	return T(s)
}

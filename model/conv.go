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
// X_col is never built whole: each goroutine builds the columns of a few
// output rows of one image at a time (a chunk, about convChunkElems
// elements, which stays in its core's cache while the GEMMs read it), and
// rebuilds them in Backward. The images run in parallel; Backward sums
// ∂L/∂W and ∂L/∂bias over fixed blocks of convBlockImages images and adds
// the blocks in order, so the bits do not depend on GOMAXPROCS. A 1×1
// kernel of stride 1 and no padding uses x itself as X_col.
type Conv2d[T gemm.Float] struct {
	Cin, Cout, H, W int
	KH, KW          int
	Stride, Pad     int // Stride 0 means 1
	Weight, Bias    []T // Cout×Cin×KH×KW and Cout; a nil Bias means none (before a norm)
	DWeight, DBias  []T // gradients; nil for a parameter-only layer
	// NoInputGrad skips ∂L/∂x, as on the stem whose input is data.
	NoInputGrad bool

	x     []T
	y, dx []T
	arenaRef[T]
	b     int
	ready bool

	// Forward runs over the images, Backward over blocks of
	// convBlockImages images, in parallel: their bodies (made once) read
	// the operands of the call from x, y, dx and dy; each part builds
	// chunks of X_col in its own scratch, each block sums its ∂L/∂W and
	// ∂L/∂bias apart.
	par                       parallelFor
	forwardBody, backwardBody func(k, lo, hi int)
	dy                        []T
	scratch                   [][]T // per part: a chunk of X_col and of ∂L/∂X_col
	dwBlocks, dbBlocks        []T   // per block: its ∂L/∂W and ∂L/∂bias
}

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
	c.x, c.b = x, b
	c.prepare(c.par.numParts(b, 1), 0)
	c.par.run(b, 1, c.forwardBody)
	c.ready = true
	return c.y, nil
}

// convChunkElems is the most elements of X_col a goroutine builds at once:
// whole output rows of one image, 512 KB of float32, which stay in the
// core's cache between im2col and the products that read them.
const convChunkElems = 1 << 17

// convBlockImages is the number of images whose ∂L/∂W and ∂L/∂bias
// Backward sums apart before adding the blocks in order.
const convBlockImages = 16

// chunkRows is the number of output rows of a chunk of X_col.
func (c *Conv2d[T]) chunkRows() int {
	k := c.Cin * c.KH * c.KW
	return max(1, min(c.OutH(), convChunkElems/(k*c.OutW())))
}

// prepare makes the bodies and sizes the scratch of parts parts, and the
// block sums of blocks blocks.
func (c *Conv2d[T]) prepare(parts, blocks int) {
	if c.forwardBody == nil {
		c.forwardBody, c.backwardBody = c.forwardImages, c.backwardBlocks
	}
	for len(c.scratch) < parts {
		c.scratch = append(c.scratch, nil)
	}
	n := c.Cin * c.KH * c.KW * c.chunkRows() * c.OutW()
	if c.direct() {
		n = 0
	}
	for k := range parts {
		c.scratch[k] = grow(c.scratch[k], 2*n)
	}
	c.dwBlocks = grow(c.dwBlocks, blocks*len(c.Weight))
	c.dbBlocks = grow(c.dbBlocks, blocks*len(c.Bias))
}

// forwardImages computes y of images [lo, hi): Y = W X_col (+ bias), a
// chunk of output rows at a time. Each element is the one sum over
// Cin·KH·KW of the whole-image product, so the bits do not depend on the
// chunks.
func (c *Conv2d[T]) forwardImages(part, lo, hi int) {
	k, in := c.Cin*c.KH*c.KW, c.Cin*c.H*c.W
	ho, wo := c.OutH(), c.OutW()
	hw, rows := ho*wo, c.chunkRows()
	for n := lo; n < hi; n++ {
		x, y := c.x[n*in:(n+1)*in], c.y[n*c.Cout*hw:(n+1)*c.Cout*hw]
		for i0 := 0; i0 < ho; i0 += rows {
			i1 := min(i0+rows, ho)
			nc := (i1 - i0) * wo
			var beta T
			if c.Bias != nil {
				for o, bo := range c.Bias {
					fill(y[o*hw+i0*wo:o*hw+i1*wo], bo)
				}
				beta = 1
			}
			cols, ldc := x[i0*wo:], hw
			if !c.direct() {
				cols, ldc = c.scratch[part][:k*nc], nc
				c.im2colChunk(cols, x, i0, i1)
			}
			gemm.GemmSerial(false, false, c.Cout, nc, k, 1, c.Weight, k, cols, ldc, beta, y[i0*wo:], hw)
		}
	}
}

// im2colChunk writes output rows [i0, i1) of X_col of one image x into
// dst (Cin·KH·KW × (i1−i0)·Wo): row (ci·KH + u)·KW + v, column (i−i0)·Wo + j
// holds x[ci, i·s − p + u, j·s − p + v], or 0 in the padding.
func (c *Conv2d[T]) im2colChunk(dst, x []T, i0, i1 int) {
	wo, s := c.OutW(), c.stride()
	nc := (i1 - i0) * wo
	for r := 0; r < c.Cin*c.KH*c.KW; r++ {
		ci, u, v := r/(c.KH*c.KW), r/c.KW%c.KH, r%c.KW
		plane := x[ci*c.H*c.W : (ci+1)*c.H*c.W]
		d := dst[r*nc : (r+1)*nc]
		if c.same() {
			c.im2colSame(d, plane, u, v, i0, i1)
			continue
		}
		jlo, jhi := c.validCols(v, wo)
		for i := i0; i < i1; i++ {
			yy := i*s - c.Pad + u
			drow := d[(i-i0)*wo : (i-i0+1)*wo]
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

// validRows is the range [ilo, ihi) of output rows i in [i0, i1) whose
// input row i − p + u lies inside the image (stride 1).
func (c *Conv2d[T]) validRows(u, i0, i1 int) (ilo, ihi int) {
	ilo = min(max(c.Pad-u, i0), i1)
	ihi = max(min(c.H+c.Pad-u, i1), ilo)
	return ilo, ihi
}

// im2colSame fills output rows [i0, i1) of row (ci, u, v) of X_col of a
// same convolution with one copy of the shifted plane, then zeroes the
// positions in the padding.
func (c *Conv2d[T]) im2colSame(dst, plane []T, u, v, i0, i1 int) {
	W, n := c.W, c.H*c.W
	ilo, ihi := c.validRows(u, i0, i1)
	jlo, jhi := c.validCols(v, W)
	d, base := (u-c.Pad)*W+v-c.Pad, i0*W
	clear(dst[:(ilo-i0)*W])
	clear(dst[(ihi-i0)*W:])
	// Positions whose source would fall before 0 or past n are columns
	// outside validCols, zeroed below.
	if a, b := max(ilo*W, -d), min(ihi*W, n-d); a < b {
		copy(dst[a-base:b-base], plane[a+d:b+d])
	}
	for i := ilo; i < ihi; i++ {
		row := dst[(i-i0)*W : (i-i0+1)*W]
		for j := 0; j < jlo; j++ {
			row[j] = 0
		}
		for j := jhi; j < W; j++ {
			row[j] = 0
		}
	}
}

// col2imChunk adds ∂L/∂X_col of output rows [i0, i1) of one image (src,
// laid out as im2colChunk's dst) onto dx, the adjoint of im2colChunk.
func (c *Conv2d[T]) col2imChunk(dx, src []T, i0, i1 int) {
	wo, s := c.OutW(), c.stride()
	nc := (i1 - i0) * wo
	for r := 0; r < c.Cin*c.KH*c.KW; r++ {
		ci, u, v := r/(c.KH*c.KW), r/c.KW%c.KH, r%c.KW
		plane := dx[ci*c.H*c.W : (ci+1)*c.H*c.W]
		g := src[r*nc : (r+1)*nc]
		if c.same() {
			c.col2imSame(plane, g, u, v, i0, i1)
			continue
		}
		jlo, jhi := c.validCols(v, wo)
		for i := i0; i < i1; i++ {
			yy := i*s - c.Pad + u
			if yy < 0 || yy >= c.H || jlo >= jhi {
				continue
			}
			drow := plane[yy*c.W : (yy+1)*c.W]
			gg := g[(i-i0)*wo+jlo : (i-i0)*wo+jhi]
			if s == 1 {
				addTo(drow[jlo-c.Pad+v:jhi-c.Pad+v], gg)
				continue
			}
			for k, xx := 0, jlo*s-c.Pad+v; k < len(gg); k, xx = k+1, xx+s {
				drow[xx] += gg[k]
			}
		}
	}
}

// col2imSame adds output rows [i0, i1) of row (ci, u, v) of ∂L/∂X_col
// onto channel ci's plane of a same convolution, the adjoint of
// im2colSame: it zeroes the positions of src in the padding (src is
// scratch) and adds the rest in one shifted pass. Adding those zeros
// changes no bits: the plane starts at +0, and a sum that starts at +0 is
// never −0.
func (c *Conv2d[T]) col2imSame(plane, src []T, u, v, i0, i1 int) {
	W, n := c.W, c.H*c.W
	ilo, ihi := c.validRows(u, i0, i1)
	jlo, jhi := c.validCols(v, W)
	d, base := (u-c.Pad)*W+v-c.Pad, i0*W
	for i := ilo; i < ihi; i++ {
		row := src[(i-i0)*W : (i-i0+1)*W]
		for j := 0; j < jlo; j++ {
			row[j] = 0
		}
		for j := jhi; j < W; j++ {
			row[j] = 0
		}
	}
	if a, b := max(ilo*W, -d), min(ihi*W, n-d); a < b {
		addTo(plane[a+d:b+d], src[a-base:b-base])
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

// Backward accumulates ∂L/∂W += Σ_n dY_n X_col,nᵀ and ∂L/∂bias +=
// Σ_n Σ_{i,j} dY_n and returns ∂L/∂x = col2im(Wᵀ dY) (nil when
// NoInputGrad).
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
	if !c.NoInputGrad {
		c.dx = gradBuf(c.grads, c.dx, c.b*c.Cin*c.H*c.W)
	}
	blocks := (c.b + convBlockImages - 1) / convBlockImages
	c.prepare(c.par.numParts(blocks, 1), blocks)
	c.dy = dy
	c.par.run(blocks, 1, c.backwardBody)
	c.dy = nil
	for blk := range blocks {
		addTo(c.DWeight, c.dwBlocks[blk*len(c.Weight):(blk+1)*len(c.Weight)])
		if c.Bias != nil {
			addTo(c.DBias, c.dbBlocks[blk*len(c.Bias):(blk+1)*len(c.Bias)])
		}
	}
	if c.NoInputGrad {
		return nil, nil
	}
	return c.dx, nil
}

// backwardBlocks sums ∂L/∂W and ∂L/∂bias of each block of images in
// [lo, hi) into the block's own sums, image by image and chunk by chunk
// of output rows, and writes ∂L/∂x of its images.
func (c *Conv2d[T]) backwardBlocks(part, lo, hi int) {
	k, in := c.Cin*c.KH*c.KW, c.Cin*c.H*c.W
	ho, wo := c.OutH(), c.OutW()
	hw, rows := ho*wo, c.chunkRows()
	for blk := lo; blk < hi; blk++ {
		dW := c.dwBlocks[blk*len(c.Weight) : (blk+1)*len(c.Weight)]
		db := c.dbBlocks[blk*len(c.Bias) : (blk+1)*len(c.Bias)]
		clear(dW)
		clear(db)
		for n := blk * convBlockImages; n < min((blk+1)*convBlockImages, c.b); n++ {
			g := c.dy[n*c.Cout*hw : (n+1)*c.Cout*hw]
			for o := range db {
				db[o] += sum(g[o*hw : (o+1)*hw])
			}
			x := c.x[n*in : (n+1)*in]
			var dx []T
			if !c.NoInputGrad {
				dx = c.dx[n*in : (n+1)*in]
			}
			if c.direct() {
				gemm.GemmSerial(false, true, c.Cout, k, hw, 1, g, hw, x, hw, 1, dW, k)
				if dx != nil {
					gemm.GemmSerial(true, false, k, hw, c.Cout, 1, c.Weight, k, g, hw, 0, dx, hw)
				}
				continue
			}
			clear(dx)
			for i0 := 0; i0 < ho; i0 += rows {
				i1 := min(i0+rows, ho)
				nc := (i1 - i0) * wo
				cols, dcols := c.scratch[part][:k*nc], c.scratch[part][k*nc:2*k*nc]
				c.im2colChunk(cols, x, i0, i1)
				gemm.GemmSerial(false, true, c.Cout, k, nc, 1, g[i0*wo:], hw, cols, nc, 1, dW, k)
				if dx != nil {
					gemm.GemmSerial(true, false, k, nc, c.Cout, 1, c.Weight, k, g[i0*wo:], hw, 0, dcols, nc)
					c.col2imChunk(dx, dcols, i0, i1)
				}
			}
		}
	}
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

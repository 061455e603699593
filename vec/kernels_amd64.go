//go:build !purego

package vec

import "golang.org/x/sys/cpu"

//go:generate go run ./internal/asmgen -out vec_amd64.s -stubs vec_stub_amd64.go -pkg vec

// avx2 is the assembly implementation; the kernels work on the largest
// multiple of 8 elements and the portable code finishes the rest.
var avx2 = kernels{
	name: "avx2",
	max: func(x []float32) float32 {
		n := len(x) &^ 7
		m := maxGo(x[n:])
		if n > 0 {
			if a := maxAVX2(&x[0], n); a > m {
				m = a
			}
		}
		return m
	},
	expSum: func(x []float32, shift float32) float32 {
		n := len(x) &^ 7
		var s float32
		if n > 0 {
			s = expSumAVX2(&x[0], n, shift)
		}
		return s + expSumGo(x[n:], shift)
	},
	expScale: func(dst, x []float32, shift, scale float32) float32 {
		n := len(x) &^ 7
		var dot float32
		if n > 0 {
			dot = expScaleAVX2(&dst[0], &x[0], n, shift, scale)
		}
		return dot + expScaleGo(dst[n:], x[n:], shift, scale)
	},
	expPairScale: func(dst, x []float32, a float32, b []float32, scale float32) float32 {
		n := len(x) &^ 7
		var dot float32
		if n > 0 {
			dot = expPairScaleAVX2(&dst[0], &x[0], &b[0], n, a, scale)
		}
		return dot + expPairScaleGo(dst[n:], x[n:], a, b[n:], scale)
	},
	adamW: func(w, g, m, v []float32, c adamWConsts) {
		n := len(w) &^ 7
		if n > 0 {
			adamWAVX2(&w[0], &g[0], &m[0], &v[0], n, &c)
		}
		adamWGo(w[n:], g[n:], m[n:], v[n:], c)
	},
	relu: func(dst, x []float32) {
		n := len(x) &^ 7
		if n > 0 {
			reluAVX2(&dst[0], &x[0], n)
		}
		reluGo(dst[n:], x[n:])
	},
	reluGrad: func(dx, dy, y []float32) {
		n := len(y) &^ 7
		if n > 0 {
			reluGradAVX2(&dx[0], &dy[0], &y[0], n)
		}
		reluGradGo(dx[n:], dy[n:], y[n:])
	},
	add: func(dst, x []float32) {
		n := len(x) &^ 7
		if n > 0 {
			addAVX2(&dst[0], &x[0], n)
		}
		addGo(dst[n:], x[n:])
	},
	addBF16: func(dst []float32, x []uint16) {
		n := len(x) &^ 7
		if n > 0 {
			addBF16AVX2(&dst[0], &x[0], n)
		}
		addBF16Go(dst[n:], x[n:])
	},
	toBF16: func(dst []uint16, x []float32) {
		n := len(x) &^ 7
		if n > 0 {
			toBF16AVX2(&dst[0], &x[0], n)
		}
		toBF16Go(dst[n:], x[n:])
	},
	fromBF16: func(dst []float32, x []uint16) {
		n := len(x) &^ 7
		if n > 0 {
			fromBF16AVX2(&dst[0], &x[0], n)
		}
		fromBF16Go(dst[n:], x[n:])
	},
	dot: func(x, y []float32) float64 {
		n := len(x) &^ 7
		var s float64
		if n > 0 {
			s = dotAVX2(&x[0], &y[0], n)
		}
		return s + dotGo(x[n:], y[n:])
	},
	scale: func(dst, x []float32, a float32) {
		n := len(x) &^ 7
		if n > 0 {
			scaleAVX2(&dst[0], &x[0], n, a)
		}
		scaleGo(dst[n:], x[n:], a)
	},
	scaleSub: func(dst, g, y []float32, c, a float32) {
		n := len(g) &^ 7
		if n > 0 {
			scaleSubAVX2(&dst[0], &g[0], &y[0], n, c, a)
		}
		scaleSubGo(dst[n:], g[n:], y[n:], c, a)
	},
	gelu: func(dst, x []float32) {
		n := len(x) &^ 7
		if n > 0 {
			geluAVX2(&dst[0], &x[0], n)
		}
		geluGo(dst[n:], x[n:])
	},
	geluGrad: func(dx, dy, x []float32) {
		n := len(x) &^ 7
		if n > 0 {
			geluGradAVX2(&dx[0], &dy[0], &x[0], n)
		}
		geluGradGo(dx[n:], dy[n:], x[n:])
	},
	moments: func(x []float32, shift float64) (s1, s2 float64) {
		n := len(x) &^ 7
		if n > 0 {
			s1, s2 = momentsAVX2(&x[0], n, shift)
		}
		t1, t2 := momentsGo(x[n:], shift)
		return s1 + t1, s2 + t2
	},
	normAffine: func(y, x, g, b []float32, c Norm) {
		n := len(x) &^ 7
		if n > 0 {
			normAffineAVX2(&y[0], &x[0], &g[0], &b[0], n, c.Hi, c.Lo, c.R)
		}
		normAffineGo(y[n:], x[n:], g[n:], b[n:], c)
	},
	normAffineScalar: func(y, x []float32, c Norm, g, b float32) {
		n := len(x) &^ 7
		if n > 0 {
			normAffineScalarAVX2(&y[0], &x[0], n, c.Hi, c.Lo, c.R, g, b)
		}
		normAffineScalarGo(y[n:], x[n:], c, g, b)
	},
	normGradAffine: func(dg, db, dy, x, g []float32, c Norm) (sd, sdx float64) {
		n := len(dy) &^ 7
		if n > 0 {
			sd, sdx = normGradAffineAVX2(&dg[0], &db[0], &dy[0], &x[0], &g[0], n, c.Hi, c.Lo, c.R)
		}
		t1, t2 := normGradAffineGo(dg[n:], db[n:], dy[n:], x[n:], g[n:], c)
		return sd + t1, sdx + t2
	},
	normGradSums: func(dy, x []float32, c Norm) (sdy, sdyx float64) {
		n := len(dy) &^ 7
		if n > 0 {
			sdy, sdyx = normGradSumsAVX2(&dy[0], &x[0], n, c.Hi, c.Lo, c.R)
		}
		t1, t2 := normGradSumsGo(dy[n:], x[n:], c)
		return sdy + t1, sdyx + t2
	},
	normGradInput: func(dx, dy, x, g []float32, c Norm, md, mdx float32) {
		n := len(dy) &^ 7
		if n > 0 {
			normGradInputAVX2(&dx[0], &dy[0], &x[0], &g[0], n, c.Hi, c.Lo, c.R, md, mdx)
		}
		normGradInputGo(dx[n:], dy[n:], x[n:], g[n:], c, md, mdx)
	},
	normGradInputScalar: func(dx, dy, x []float32, c Norm, g, md, mdx float32) {
		n := len(dy) &^ 7
		if n > 0 {
			normGradInputScalarAVX2(&dx[0], &dy[0], &x[0], n, c.Hi, c.Lo, c.R, g, md, mdx)
		}
		normGradInputScalarGo(dx[n:], dy[n:], x[n:], c, g, md, mdx)
	},
}

// accelerated returns the assembly kernels if the CPU has AVX2 and FMA.
func accelerated() *kernels {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		return &avx2
	}
	return nil
}

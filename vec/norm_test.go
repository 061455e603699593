package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// eps32 is the unit roundoff of float32, 2⁻²⁴.
const eps32 = 1.0 / (1 << 24)

// normRow draws a row of n values of mean mean and spread 1, and its
// float64 mean, variance and Norm with ε = 1e-5, the statistics from
// Moments shifted by the first value.
func normRow(t *testing.T, k *kernels, rng *rand.Rand, n int, mean float64) (x []float32, mu, r float64, c Norm) {
	t.Helper()
	x = randRow(rng, n, 1, 1)
	for i := range x {
		x[i] += float32(mean)
	}
	var wantMu, wantVar float64
	for _, v := range x {
		wantMu += float64(v)
	}
	wantMu /= float64(n)
	for _, v := range x {
		wantVar += (float64(v) - wantMu) * (float64(v) - wantMu)
	}
	wantVar /= float64(n)
	shift := float64(x[0])
	s1, s2 := k.moments(x, shift)
	m := s1 / float64(n)
	mu, v := shift+m, max(s2/float64(n)-m*m, 0)
	if math.Abs(mu-wantMu) > 1e-13*(math.Abs(wantMu)+1) || math.Abs(v-wantVar) > 1e-13*(wantVar+1) {
		t.Fatalf("n %d, mean %g: Moments give mean %v and variance %v, want %v and %v", n, mean, mu, v, wantMu, wantVar)
	}
	r = 1 / math.Sqrt(v+1e-5)
	return x, mu, r, NewNorm(mu, r)
}

// TestNormKernels checks the LayerNorm and GroupNorm kernels of every
// implementation against the float64 formulas, on rows of every tail
// length and with means small and large against the spread.
func TestNormKernels(t *testing.T) {
	forEach(t, func(t *testing.T, k *kernels) {
		rng := rand.New(rand.NewPCG(21, 22))
		for _, mean := range []float64{0, 3, 1e3} {
			for _, n := range lengths[1:] {
				x, mu, r, c := normRow(t, k, rng, n, mean)
				if d := float64(c.Hi) + float64(c.Lo) - mu; math.Abs(d) > 1e-14*math.Abs(mu) {
					t.Fatalf("NewNorm(%v): Hi + Lo is %v off", mu, d)
				}
				g, b, dy := randRow(rng, n, 2, 2), randRow(rng, n, 1, 1), randRow(rng, n, 1, 1)
				xh := make([]float64, n) // x̂ in float64
				for i, v := range x {
					xh[i] = (float64(v) - mu) * r
					// x̂ to a few float32 roundings of its own size (the
					// rounding of μ − Hi is far below them).
					if e := math.Abs(float64(c.XHat(v)) - xh[i]); e > 3*eps32*math.Abs(xh[i])+1e-12*math.Abs(mu)*r {
						t.Fatalf("n %d, mean %g: XHat(%v) = %v, want %v", n, mean, v, c.XHat(v), xh[i])
					}
				}
				y := make([]float32, n)
				k.normAffine(y, x, g, b, c)
				for i := range y {
					want := float64(g[i])*xh[i] + float64(b[i])
					if e := math.Abs(float64(y[i]) - want); e > 4*eps32*(math.Abs(float64(g[i])*xh[i])+math.Abs(float64(b[i]))) {
						t.Fatalf("n %d, mean %g: NormAffine [%d] = %v, want %v", n, mean, i, y[i], want)
					}
				}
				const gs, bs = -1.25, 0.5
				k.normAffineScalar(y, x, c, gs, bs)
				for i := range y {
					want := gs*xh[i] + bs
					if e := math.Abs(float64(y[i]) - want); e > 4*eps32*(math.Abs(gs*xh[i])+bs) {
						t.Fatalf("n %d, mean %g: NormAffineScalar [%d] = %v, want %v", n, mean, i, y[i], want)
					}
				}
				// In place.
				z := clone(x)
				k.normAffineScalar(z, z, c, gs, bs)
				if !equal(z, y) {
					t.Fatalf("n %d: NormAffineScalar in place differs", n)
				}

				dg, db := randRow(rng, n, 1, 1), randRow(rng, n, 1, 1)
				dg0, db0 := clone(dg), clone(db)
				sd, sdx := k.normGradAffine(dg, db, dy, x, g, c)
				var wsd, wsdx, mag float64
				for i := range dy {
					if want := db0[i] + dy[i]; db[i] != want {
						t.Fatalf("n %d: NormGradAffine db[%d] = %v, want %v", n, i, db[i], want)
					}
					xh32 := float64(c.XHat(x[i]))
					want := float64(dg0[i]) + float64(dy[i])*xh32
					if e := math.Abs(float64(dg[i]) - want); e > 2*eps32*(math.Abs(float64(dg0[i]))+math.Abs(float64(dy[i])*xh32)) {
						t.Fatalf("n %d: NormGradAffine dg[%d] = %v, want %v", n, i, dg[i], want)
					}
					d := float64(dy[i] * g[i])
					wsd += d
					wsdx += d * xh32
					mag += math.Abs(d) * (1 + math.Abs(xh32))
				}
				if math.Abs(sd-wsd) > 1e-13*mag || math.Abs(sdx-wsdx) > 1e-13*mag {
					t.Fatalf("n %d: NormGradAffine sums %v, %v, want %v, %v", n, sd, sdx, wsd, wsdx)
				}
				sdy, sdyx := k.normGradSums(dy, x, c)
				wsd, wsdx, mag = 0, 0, 0
				for i, v := range dy {
					xh32 := float64(c.XHat(x[i]))
					wsd += float64(v)
					wsdx += float64(v) * xh32
					mag += math.Abs(float64(v)) * (1 + math.Abs(xh32))
				}
				if math.Abs(sdy-wsd) > 1e-13*mag || math.Abs(sdyx-wsdx) > 1e-13*mag {
					t.Fatalf("n %d: NormGradSums %v, %v, want %v, %v", n, sdy, sdyx, wsd, wsdx)
				}

				const md, mdx = 0.3, -0.7
				dx := make([]float32, n)
				k.normGradInput(dx, dy, x, g, c, md, mdx)
				for i := range dx {
					xh32 := float64(c.XHat(x[i]))
					d := float64(dy[i] * g[i])
					want := (d - (md + xh32*mdx)) * float64(c.R)
					if e := math.Abs(float64(dx[i]) - want); e > 3*eps32*(math.Abs(d)+md+math.Abs(xh32*mdx))*float64(c.R) {
						t.Fatalf("n %d, mean %g: NormGradInput [%d] = %v, want %v", n, mean, i, dx[i], want)
					}
				}
				k.normGradInputScalar(dx, dy, x, c, gs, md, mdx)
				for i := range dx {
					xh32 := float64(c.XHat(x[i]))
					d := float64(float32(gs) * dy[i])
					want := (d - (md + xh32*mdx)) * float64(c.R)
					if e := math.Abs(float64(dx[i]) - want); e > 3*eps32*(math.Abs(d)+md+math.Abs(xh32*mdx))*float64(c.R) {
						t.Fatalf("n %d, mean %g: NormGradInputScalar [%d] = %v, want %v", n, mean, i, dx[i], want)
					}
				}
				z = clone(dy)
				k.normGradInputScalar(z, z, x, c, gs, md, mdx)
				if !equal(z, dx) {
					t.Fatalf("n %d: NormGradInputScalar in place differs", n)
				}
			}
		}
	})
}

// TestMomentsEmpty checks the sums of an empty row.
func TestMomentsEmpty(t *testing.T) {
	forEach(t, func(t *testing.T, k *kernels) {
		if s1, s2 := k.moments(nil, 3); s1 != 0 || s2 != 0 {
			t.Errorf("Moments(nil) = %v, %v", s1, s2)
		}
	})
}

package vec

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// geluRef is the float64 GELU y = x Φ(x) and its derivative Φ(x) + x φ(x)
// at a float32 x, with Φ(x) = ½ erfc(−x/√2) (accurate in both tails) and
// the limits at ±Inf: y(+Inf) = +Inf, y(−Inf) = 0, and 1 and 0 for the
// derivative.
func geluRef(x float32) (y, g float64) {
	xf := float64(x)
	switch {
	case xf != xf:
		return xf, xf
	case math.IsInf(xf, 1):
		return xf, 1
	case math.IsInf(xf, -1):
		return 0, 0
	}
	cdf := 0.5 * math.Erfc(-xf/math.Sqrt2)
	return xf * cdf, cdf + xf*math.Exp(-xf*xf/2)/math.Sqrt(2*math.Pi)
}

// geluErr is the distance of got from want in float32 ulps of max(1, |x|)
// (2⁻²³·max(1, |x|)): y = x Φ(x) and Φ + x φ are sums of terms no larger
// than that, so it is the scale their errors are measured on. Two NaNs or
// two equal infinities are 0 apart; a NaN and a number are +Inf apart.
func geluErr(got float32, want float64, x float32) float64 {
	g := float64(got)
	switch {
	case g != g || want != want:
		if g != g && want != want {
			return 0
		}
		return math.Inf(1)
	case g == want:
		return 0
	}
	return math.Abs(g-want) / (math.Max(1, math.Abs(float64(x))) * 0x1p-23)
}

// geluOf returns the implementation's GELU of x and the factor
// Φ(x) + x φ(x) of its gradient (GELUGrad with dy = 1).
func geluOf(k *kernels, x []float32) (y, g []float32) {
	y, g = make([]float32, len(x)), make([]float32, len(x))
	k.gelu(y, x)
	for i := range g {
		g[i] = 1
	}
	k.geluGrad(g, g, x)
	return y, g
}

// The largest errors, in ulps of max(1, |x|), that the GELU tests allow:
// the package documentation's bounds.
const (
	geluTolY = 1
	geluTolG = 1.5
)

// TestGELUAccuracy compares y and Φ + xφ with the float64 reference over
// every 251st float32 of magnitude in [2⁻²⁶, 20] (both signs: the whole
// range where Φ(x) is neither 0 nor 1 in float32, sampled finely), a
// grid, and normal draws.
func TestGELUAccuracy(t *testing.T) {
	var x []float32
	for b := math.Float32bits(0x1p-26); b <= math.Float32bits(20); b += 251 {
		v := math.Float32frombits(b)
		x = append(x, v, -v)
	}
	for v := -16.0; v <= 16; v += 1.0 / 256 {
		x = append(x, float32(v))
	}
	rng := rand.New(rand.NewPCG(1, 3))
	for range 1 << 14 {
		x = append(x, float32(2*rng.NormFloat64()))
	}
	forEach(t, func(t *testing.T, k *kernels) {
		y, g := geluOf(k, x)
		var wy, wg float64
		var ay, ag float32
		for i, v := range x {
			ry, rg := geluRef(v)
			if d := geluErr(y[i], ry, v); d > wy {
				wy, ay = d, v
			}
			if d := geluErr(g[i], rg, v); d > wg {
				wg, ag = d, v
			}
		}
		t.Logf("%d inputs: largest error %.3f ulp of max(1, |x|) in y (x = %v), %.3f in Φ + xφ (x = %v)", len(x), wy, ay, wg, ag)
		if wy > geluTolY || wg > geluTolG {
			t.Errorf("errors %.3f (x = %v) and %.3f (x = %v), want at most %v and %v", wy, ay, wg, ag, float64(geluTolY), geluTolG)
		}
	})
}

// TestGELUSpecialValues puts zeros, tiny and huge values, infinities, NaN
// and the edges of the exponential's range in every lane of a vector and
// in the tail, with ordinary neighbours.
func TestGELUSpecialValues(t *testing.T) {
	negZero := float32(math.Copysign(0, -1))
	specials := []float32{0, negZero, 1e-30, -1e-30, 1e-45, -1e-45, 0x1p-126, 40, -40,
		13.2, -13.2, 13.25, -13.25, 14, -14, 14.5, -14.5, 1e30, -1e30, maxF32, -maxF32,
		inf32, -inf32, nan32, 0.75, -0.75, 1, -1}
	forEach(t, func(t *testing.T, k *kernels) {
		for _, v := range specials {
			for _, n := range []int{1, 8, 13, 32} {
				for pos := 0; pos < n; pos++ {
					x := make([]float32, n)
					for i := range x {
						x[i] = float32(i%5) - 2
					}
					x[pos] = v
					y, g := geluOf(k, x)
					for i, xi := range x {
						ry, rg := geluRef(xi)
						if d := geluErr(y[i], ry, xi); d > geluTolY {
							t.Fatalf("GELU(%v) = %v, want %v (n %d, position %d)", xi, y[i], ry, n, pos)
						}
						if d := geluErr(g[i], rg, xi); d > geluTolG {
							t.Fatalf("GELU'(%v) = %v, want %v (n %d, position %d)", xi, g[i], rg, n, pos)
						}
					}
					// The sign of a zero y is that of x; y of a large
					// negative x is 0, not a tiny negative number.
					if (v == 0 || v == 1e-45 || v == -1e-45) && math.Signbit(float64(y[pos])) != math.Signbit(float64(v)) {
						t.Fatalf("GELU(%v) = %v has the wrong sign", v, y[pos])
					}
					if v <= -13.25 && y[pos] != 0 {
						t.Fatalf("GELU(%v) = %v, want 0", v, y[pos])
					}
				}
			}
		}
	})
}

// TestGELULengths runs every length (the 8-lane vectors, the unrolled
// blocks and their tails), in place and not: dst may be x, dx may be dy
// or x, and dx is dy times the factor of dy = 1, bit for bit.
func TestGELULengths(t *testing.T) {
	forEach(t, func(t *testing.T, k *kernels) {
		rng := rand.New(rand.NewPCG(17, 18))
		for _, n := range lengths {
			x, dy := randRow(rng, n, 6, 6), randRow(rng, n, 2, 2)
			y, g := geluOf(k, x)
			for i, v := range x {
				ry, rg := geluRef(v)
				if geluErr(y[i], ry, v) > geluTolY || geluErr(g[i], rg, v) > geluTolG {
					t.Fatalf("n %d: GELU(%v) = %v, %v, want %v, %v", n, v, y[i], g[i], ry, rg)
				}
			}
			dx := make([]float32, n)
			k.geluGrad(dx, dy, x)
			for i := range dx {
				if want := dy[i] * g[i]; math.Float32bits(dx[i]) != math.Float32bits(want) {
					t.Fatalf("n %d: dx[%d] = %v, want dy·g = %v", n, i, dx[i], want)
				}
			}
			inPlace := clone(x)
			k.gelu(inPlace, inPlace)
			if !equal(inPlace, y) {
				t.Fatalf("n %d: GELU in place differs", n)
			}
			onDy := clone(dy)
			k.geluGrad(onDy, onDy, x)
			onX := clone(x)
			k.geluGrad(onX, dy, onX)
			if !equal(onDy, dx) || !equal(onX, dx) {
				t.Fatalf("n %d: GELUGrad in place differs", n)
			}
		}
	})
}

// TestGELUPolynomial checks the fit of geluT in float64: w·T(v) is the
// Mills ratio over √(2π), M(u)/√(2π) = exp(u²/2)·½ erfc(u/√2), to 2.5·10⁻⁸
// relative over [0, geluUMax].
func TestGELUPolynomial(t *testing.T) {
	worst, at := 0.0, 0.0
	for i := 0; i <= 1<<16; i++ {
		u := geluUMax * float64(i) / (1 << 16)
		w := 1 / (u + geluC)
		v := (geluA*u - geluC) * w
		var p float64
		for k := len(geluT) - 1; k >= 0; k-- {
			p = p*v + float64(geluT[k])
		}
		want := math.Exp(u*u/2) * 0.5 * math.Erfc(u/math.Sqrt2)
		if e := math.Abs(w*p/want - 1); e > worst {
			worst, at = e, u
		}
	}
	t.Logf("largest relative error %.3g at u = %v", worst, at)
	if worst > 2.5e-8 {
		t.Errorf("w·T(v) differs from M(u)/√(2π) by %.3g (relative) at u = %v", worst, at)
	}
}

// TestGELUAssemblyConstants checks that the generated assembly holds the
// GELU's constants of this package: internal/asmgen keeps a copy.
func TestGELUAssemblyConstants(t *testing.T) {
	src, err := os.ReadFile("vec_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float32{"geluC": geluC, "geluA": geluA, "geluUMax": geluUMax, "invSqrt2Pi": invSqrt2Pi}
	for k, c := range geluT {
		want[fmt.Sprintf("geluT%d", k)] = c
	}
	for name, c := range want {
		line := fmt.Sprintf("DATA %s<>+0(SB)/4, $%#08x", name, math.Float32bits(c))
		if !strings.Contains(string(src), line+"\n") {
			t.Errorf("vec_amd64.s has no %q (%s = %v)", line, name, c)
		}
	}
}

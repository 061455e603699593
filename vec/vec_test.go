package vec

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// lengths covers empty slices, the tails of 8-lane vectors and of the
// unrolled blocks, and rows as long as a logit chunk.
var lengths = []int{0, 1, 2, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 63, 64, 65, 100, 1000, 1023, 1024, 1025}

var (
	inf32  = float32(math.Inf(1))
	nan32  = float32(math.NaN())
	maxF32 = float32(math.MaxFloat32)
)

// forEach runs f on every implementation usable on this CPU.
func forEach(t *testing.T, f func(t *testing.T, k *kernels)) {
	for _, k := range implementations() {
		t.Run(k.name, func(t *testing.T) { f(t, k) })
	}
}

// ulps is the distance between a and b in units in the last place of
// float32 (0 if both are NaN or equal; huge if only one is NaN or the
// signs differ, except for zeros).
func ulps(a, b float32) float64 {
	if a != a || b != b {
		if a != a && b != b {
			return 0
		}
		return math.Inf(1)
	}
	if a == b {
		return 0
	}
	if (a < 0) != (b < 0) {
		return math.Inf(1)
	}
	ia, ib := int64(math.Float32bits(abs32(a))), int64(math.Float32bits(abs32(b)))
	return math.Abs(float64(ia - ib))
}

func abs32(x float32) float32 { return float32(math.Abs(float64(x))) }

// exp64 is the reference: math.Exp of the float32 difference (the kernels
// subtract in float32), rounded to float32.
func exp64(x, shift float32) float32 { return float32(math.Exp(float64(x - shift))) }

// randRow draws n logits in [−lo, hi].
func randRow(rng *rand.Rand, n int, lo, hi float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(-lo + (hi+lo)*rng.Float64())
	}
	return x
}

// expOf returns the implementation's exp of every entry of x through
// ExpScale (shift 0, scale 1).
func expOf(k *kernels, x []float32) []float32 {
	dst := make([]float32, len(x))
	k.expScale(dst, x, 0, 1)
	return dst
}

// TestExpAccuracy sweeps the whole float32 range where exp is neither 0
// nor +Inf, in steps finer than the spacing of n·ln 2, and demands at most
// 2 ulp from the correctly rounded value (subnormal results included).
func TestExpAccuracy(t *testing.T) {
	forEach(t, func(t *testing.T, k *kernels) {
		const n = 1 << 18
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(-104 + (104+89)*float64(i)/n)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < 4096; i++ { // around 0, where most softmax terms lie
			x = append(x, float32(rng.Float64()-0.5)*1e-3, float32(rng.NormFloat64()))
		}
		got := expOf(k, x)
		worst, at := 0.0, float32(0)
		for i, v := range x {
			if d := ulps(got[i], exp64(v, 0)); d > worst {
				worst, at = d, v
			}
		}
		t.Logf("max error %v ulp at x = %v", worst, at)
		if worst > 2 {
			t.Errorf("exp(%v) = %v, want %v: %v ulp", at, expOf(k, []float32{at})[0], exp64(at, 0), worst)
		}
	})
}

func TestExpSpecialValues(t *testing.T) {
	tests := []struct {
		x, shift, want float32
	}{
		{0, 0, 1},
		{float32(math.Copysign(0, -1)), 0, 1},
		{1, 1, 1},
		{3, float32(math.Inf(-1)), inf32}, // −Inf shift: every finite entry overflows
		{-inf32, 0, 0},
		{inf32, 0, inf32},
		{-inf32, -inf32, nan32},
		{inf32, inf32, nan32},
		{5, inf32, 0},
		{nan32, 0, nan32},
		{0, nan32, nan32},
		{-200, 0, 0},                      // far below the smallest subnormal
		{-103.9, 0, 0},                    // exp ≈ 7e-46, rounds to 0
		{-103.2, 0, exp64(-103.2, 0)},     // the smallest subnormals
		{-95, 0, exp64(-95, 0)},           // subnormal
		{-87.5, 0, exp64(-87.5, 0)},       // just below the smallest normal
		{88.7, 0, exp64(88.7, 0)},         // close to the largest float32
		{88.72283, 0, exp64(88.72283, 0)}, // ln MaxFloat32, still finite
		{88.73, 0, inf32},
		{89.5, 0, inf32},
		{1e30, 0, inf32},
		{maxF32, 0, inf32},
		{-maxF32, 0, 0},
		{maxF32, maxF32, 1},
		{1e4, 1e4 - 2, exp64(2, 0)}, // large logits, moderate difference
	}
	forEach(t, func(t *testing.T, k *kernels) {
		for _, tc := range tests {
			// Put the value in every lane position of a vector and in
			// the tail, with ordinary neighbours.
			for _, n := range []int{1, 8, 13, 32} {
				for pos := 0; pos < n; pos++ {
					x := make([]float32, n)
					x[pos] = tc.x
					dst := make([]float32, n)
					k.expScale(dst, x, tc.shift, 1)
					if d := ulps(dst[pos], tc.want); d > 2 {
						t.Fatalf("exp(%v − %v) = %v, want %v (n %d, position %d)", tc.x, tc.shift, dst[pos], tc.want, n, pos)
					}
					if ref := exp64(0, tc.shift); n > 1 && ulps(dst[(pos+1)%n], ref) > 2 {
						t.Fatalf("neighbour of %v: exp(0 − %v) = %v, want %v", tc.x, tc.shift, dst[(pos+1)%n], ref)
					}
				}
			}
		}
	})
}

func TestMax(t *testing.T) {
	forEach(t, func(t *testing.T, k *kernels) {
		rng := rand.New(rand.NewPCG(3, 4))
		for _, n := range lengths {
			x := randRow(rng, n, 50, 50)
			want := float32(math.Inf(-1))
			for _, v := range x {
				want = max(want, v)
			}
			if got := k.max(x); got != want {
				t.Errorf("n %d: Max = %v, want %v", n, got, want)
			}
			if n == 0 {
				continue
			}
			// The maximum in every position; NaNs are skipped.
			for _, pos := range []int{0, n / 2, n - 1} {
				y := append([]float32(nil), x...)
				y[pos] = 1e6
				y[(pos+1)%n] = nan32
				if n == 1 {
					y[0] = 1e6
				}
				if got := k.max(y); got != 1e6 {
					t.Errorf("n %d, max at %d: Max = %v, want 1e6", n, pos, got)
				}
			}
			allNaN := make([]float32, n)
			for i := range allNaN {
				allNaN[i] = nan32
			}
			if got := k.max(allNaN); !math.IsInf(float64(got), -1) {
				t.Errorf("n %d: Max of NaNs = %v, want −Inf", n, got)
			}
			y := append([]float32(nil), x...)
			y[n-1] = inf32
			if got := k.max(y); got != inf32 {
				t.Errorf("n %d: Max with +Inf = %v", n, got)
			}
		}
	})
}

// sumTol bounds the relative error of a float32 sum of n terms that are
// each within 2 ulp.
func sumTol(n int) float64 { return 3e-7 + float64(n)*6e-8 }

func TestExpSum(t *testing.T) {
	forEach(t, func(t *testing.T, k *kernels) {
		rng := rand.New(rand.NewPCG(5, 6))
		for _, n := range lengths {
			for _, spread := range []float64{1, 30, 300} {
				x := randRow(rng, n, spread, spread)
				shift := k.max(x)
				var want float64
				for _, v := range x {
					want += math.Exp(float64(v - shift))
				}
				got := float64(k.expSum(x, shift))
				if math.Abs(got-want) > sumTol(n)*want {
					t.Errorf("n %d spread %v: ExpSum = %v, want %v (rel %g)", n, spread, got, want, math.Abs(got-want)/want)
				}
			}
		}
		// The streamed log-sum-exp's special rows.
		x := []float32{-inf32, -inf32, -inf32, -inf32, -inf32, -inf32, -inf32, -inf32, -inf32, 0}
		if got := k.expSum(x, 0); got != 1 {
			t.Errorf("ExpSum of −Infs and one 0 = %v, want 1", got)
		}
		x[3] = nan32
		if got := k.expSum(x, 0); got == got {
			t.Errorf("ExpSum with a NaN = %v, want NaN", got)
		}
		if got := k.expSum(nil, 3); got != 0 {
			t.Errorf("ExpSum(nil) = %v", got)
		}
	})
}

// checkRow compares dst with want entry by entry (4 ulp: the exponential
// and the scaling) and the returned dot product with Σ want·x.
func checkRow(t *testing.T, name string, dst, want, x []float32, dot float32) {
	t.Helper()
	var ref, mag float64
	for i := range want {
		if d := ulps(dst[i], want[i]); d > 4 && math.Abs(float64(dst[i]-want[i])) > 1e-44 {
			t.Fatalf("%s: dst[%d] = %v, want %v (%v ulp)", name, i, dst[i], want[i], d)
		}
		ref += float64(want[i]) * float64(x[i])
		mag += math.Abs(float64(want[i]) * float64(x[i]))
	}
	if math.Abs(float64(dot)-ref) > sumTol(len(x))*mag+1e-30 {
		t.Fatalf("%s: dot = %v, want %v", name, dot, ref)
	}
}

func TestExpScale(t *testing.T) {
	forEach(t, func(t *testing.T, k *kernels) {
		rng := rand.New(rand.NewPCG(7, 8))
		for _, n := range lengths {
			for _, scale := range []float32{1, 1.0 / 1024, 0.37} {
				x := randRow(rng, n, 120, 20)
				shift := float32(rng.NormFloat64() * 3)
				want := make([]float32, n)
				for i, v := range x {
					want[i] = float32(float64(scale) * math.Exp(float64(v-shift)))
				}
				dst := make([]float32, n)
				dot := k.expScale(dst, x, shift, scale)
				checkRow(t, fmt.Sprintf("n %d scale %v", n, scale), dst, want, x, dot)
				// In place.
				y := append([]float32(nil), x...)
				dot2 := k.expScale(y, y, shift, scale)
				checkRow(t, fmt.Sprintf("in place n %d", n), y, want, x, dot2)
			}
		}
	})
}

func TestExpPairScale(t *testing.T) {
	forEach(t, func(t *testing.T, k *kernels) {
		rng := rand.New(rand.NewPCG(9, 10))
		for _, n := range lengths {
			x := randRow(rng, n, 30, 14)
			b := randRow(rng, n, 2, 16)
			a := float32(rng.Float64() * 14)
			const scale = 1.0 / 1024
			want := make([]float32, n)
			for i, v := range x {
				want[i] = float32(scale * (math.Exp(float64(v-a)) + math.Exp(float64(v-b[i]))))
			}
			dst := make([]float32, n)
			dot := k.expPairScale(dst, x, a, b, scale)
			checkRow(t, fmt.Sprintf("n %d", n), dst, want, x, dot)
			y := append([]float32(nil), x...)
			dot2 := k.expPairScale(y, y, a, b, scale)
			checkRow(t, fmt.Sprintf("in place n %d", n), y, want, x, dot2)
		}
	})
}

// adamWRef is the update in float64 from the same float32 scalars.
func adamWRef(w, g, m, v []float32, s AdamWStep) {
	b1, b2 := float64(s.Beta1), float64(s.Beta2)
	for i := range w {
		gi := float64(g[i])
		mi := b1*float64(m[i]) + (1-b1)*gi
		vi := b2*float64(v[i]) + (1-b2)*gi*gi
		m[i], v[i] = float32(mi), float32(vi)
		u := (mi / float64(s.Bias1)) / (math.Sqrt(vi/float64(s.Bias2)) + float64(s.Eps))
		w[i] = float32(float64(w[i]) - float64(s.LR)*(u+float64(s.Decay)*float64(w[i])))
	}
}

func TestAdamW(t *testing.T) {
	forEach(t, func(t *testing.T, k *kernels) {
		rng := rand.New(rand.NewPCG(11, 12))
		for _, n := range lengths {
			for step, s := range []AdamWStep{
				{Beta1: 0.9, Beta2: 0.999, Bias1: 0.1, Bias2: 0.001, Eps: 1e-8, LR: 1e-3, Decay: 0.1},
				{Beta1: 0.9, Beta2: 0.98, Bias1: 0.65, Bias2: 0.33, Eps: 1e-6, LR: 0.5, Decay: 0},
				{Beta1: 0, Beta2: 0, Bias1: 1, Bias2: 1, Eps: 1e-8, LR: 1e-2, Decay: 0.01},
			} {
				w, g := randRow(rng, n, 1, 1), randRow(rng, n, 0.01, 0.01)
				m, v := randRow(rng, n, 0.01, 0.01), randRow(rng, n, 0, 1e-4)
				if n > 3 {
					g[0], g[1], m[1], v[1] = 0, 0, 0, 0 // a zero moment: u = 0
					g[2] = 1e-30                        // g² underflows
				}
				w2, g2, m2, v2 := clone(w), clone(g), clone(m), clone(v)
				c := adamWConsts{s.Beta1, 1 - s.Beta1, s.Beta2, 1 - s.Beta2, 1 / s.Bias1, 1 / s.Bias2, s.Eps, s.LR, s.Decay}
				k.adamW(w, g, m, v, c)
				adamWRef(w2, g2, m2, v2, s)
				for i := range w {
					for _, p := range []struct {
						name      string
						got, want float32
					}{{"w", w[i], w2[i]}, {"m", m[i], m2[i]}, {"v", v[i], v2[i]}} {
						if d := ulps(p.got, p.want); d > 4 && math.Abs(float64(p.got-p.want)) > 1e-6*float64(s.LR) {
							t.Fatalf("n %d config %d: %s[%d] = %v, want %v", n, step, p.name, i, p.got, p.want)
						}
					}
				}
				if !equal(g, g2) {
					t.Fatalf("n %d: AdamW changed the gradient", n)
				}
			}
		}
	})
}

func TestReLUAndAdd(t *testing.T) {
	forEach(t, func(t *testing.T, k *kernels) {
		rng := rand.New(rand.NewPCG(13, 14))
		for _, n := range lengths {
			x, dy := randRow(rng, n, 1, 1), randRow(rng, n, 1, 1)
			if n > 4 {
				x[0], x[1], x[2], x[3] = nan32, inf32, -inf32, 0
				dy[4] = nan32
			}
			y := make([]float32, n)
			k.relu(y, x)
			for i, v := range x {
				if want := max(v, 0); !(y[i] == want || (want != want && y[i] != y[i])) {
					t.Fatalf("n %d: ReLU(%v) = %v", n, v, y[i])
				}
			}
			dx := make([]float32, n)
			k.reluGrad(dx, dy, y)
			for i := range dx {
				want := float32(0)
				if y[i] > 0 {
					want = dy[i]
				}
				if !(dx[i] == want || (want != want && dx[i] != dx[i])) {
					t.Fatalf("n %d: ReLUGrad at y = %v, dy = %v: %v, want %v", n, y[i], dy[i], dx[i], want)
				}
			}
			acc := clone(dy)
			k.add(acc, x)
			for i := range acc {
				if want := dy[i] + x[i]; !(acc[i] == want || (want != want && acc[i] != acc[i])) {
					t.Fatalf("n %d: Add: %v + %v = %v", n, dy[i], x[i], acc[i])
				}
			}
		}
	})
}

// TestBF16: FromBF16 widens exactly, ToBF16 rounds to the nearest
// bfloat16 with ties to even (checked against the neighbours of each
// value), keeps NaN a quiet NaN, saturates to ±Inf, and AddBF16 is the
// float32 sum of the widened values.
func TestBF16(t *testing.T) {
	forEach(t, func(t *testing.T, k *kernels) {
		rng := rand.New(rand.NewPCG(21, 22))
		for _, n := range lengths {
			x := randRow(rng, n, 1, 1)
			specials := []float32{nan32, inf32, -inf32, 0, float32(math.Copysign(0, -1)), math.MaxFloat32,
				math.Float32frombits(0x3f808000), math.Float32frombits(0x3f818000), math.Float32frombits(0x7f800001),
				math.Float32frombits(1), 1.00390625, -1.01171875}
			for i := 0; i < n && i < len(specials); i++ {
				x[n-1-i] = specials[i]
			}
			h := make([]uint16, n)
			k.toBF16(h, x)
			w := make([]float32, n)
			k.fromBF16(w, h)
			for i, v := range x {
				got := w[i]
				if v != v {
					if got == got || h[i]&0x40 == 0 {
						t.Fatalf("n %d: NaN %#x became %#x", n, math.Float32bits(v), h[i])
					}
					continue
				}
				if math.Float32bits(got)&0xffff != 0 {
					t.Fatalf("n %d: FromBF16(%#x) = %v has low bits", n, h[i], got)
				}
				b := math.Float32bits(v) &^ 0xffff // truncated towards zero
				lo, hi := math.Float32frombits(b), math.Float32frombits(b+0x10000)
				if b&0x7fffffff == 0x7f800000 {
					hi = lo // ±Inf
				}
				hi64 := float64(hi)
				if math.IsInf(hi64, 0) && !math.IsInf(float64(v), 0) {
					hi64 = math.Copysign(math.Ldexp(1, 128), hi64) // where +Inf stands in the rounding
				}
				dlo, dhi := math.Abs(float64(v)-float64(lo)), math.Abs(hi64-float64(v))
				want := lo
				if dhi < dlo || (dhi == dlo && (b>>16)&1 == 1) {
					want = hi
				}
				if math.Float32bits(got) != math.Float32bits(want) {
					t.Fatalf("n %d: ToBF16(%v = %#x) = %v (%#x), want %v", n, v, math.Float32bits(v), got, h[i], want)
				}
			}
			acc := randRow(rng, n, 1, 1)
			sum := clone(acc)
			k.addBF16(sum, h)
			for i := range sum {
				if want := acc[i] + w[i]; !(sum[i] == want || (want != want && sum[i] != sum[i])) {
					t.Fatalf("n %d: AddBF16: %v + %v = %v", n, acc[i], w[i], sum[i])
				}
			}
		}
	})
}

func TestDotScaleScaleSub(t *testing.T) {
	forEach(t, func(t *testing.T, k *kernels) {
		rng := rand.New(rand.NewPCG(15, 16))
		for _, n := range lengths {
			x, y := randRow(rng, n, 3, 3), randRow(rng, n, 1e3, 1e3)
			var want, mag float64
			for i := range x {
				want += float64(x[i]) * float64(y[i])
				mag += math.Abs(float64(x[i]) * float64(y[i]))
			}
			if got := k.dot(x, y); math.Abs(got-want) > 1e-14*mag {
				t.Errorf("n %d: Dot = %v, want %v", n, got, want)
			}
			if n > 0 {
				// Squares of large float32s overflow float32 but not the
				// float64 sum; a NaN or an infinity reaches the result.
				z := clone(x)
				z[n-1] = 1e30
				if got, w := k.dot(z, z), 1e60; math.Abs(got-w) > 1e-6*w {
					t.Errorf("n %d: Dot with 1e30 = %v", n, got)
				}
				z[n/2] = nan32
				if got := k.dot(z, y); got == got {
					t.Errorf("n %d: Dot with NaN = %v", n, got)
				}
			}
			const a, c = 0.37, -1.7
			dst := make([]float32, n)
			k.scale(dst, x, a)
			for i, v := range x {
				if dst[i] != a*v {
					t.Fatalf("n %d: Scale: %v·%v = %v", n, float32(a), v, dst[i])
				}
			}
			k.scaleSub(dst, x, y, c, a)
			for i := range x {
				w := float32(float64(float32(a)) * float64(float32(float64(x[i])-float64(float32(c))*float64(y[i]))))
				if d := ulps(dst[i], w); d > 1 {
					t.Fatalf("n %d: ScaleSub: %v·(%v − %v·%v) = %v, want %v", n, float32(a), x[i], float32(c), y[i], dst[i], w)
				}
			}
			// In place on either operand.
			g := clone(x)
			k.scaleSub(g, g, y, c, a)
			if !equal(g, dst) {
				t.Fatalf("n %d: ScaleSub in place differs", n)
			}
		}
	})
}

func TestLengthMismatchPanics(t *testing.T) {
	a, b := make([]float32, 3), make([]float32, 4)
	for name, f := range map[string]func(){
		"ExpScale":            func() { ExpScale(a, b, 0, 1) },
		"ExpPairScale":        func() { ExpPairScale(a, a, 0, b, 1) },
		"AdamW":               func() { AdamW(a, a, b, a, AdamWStep{Bias1: 1, Bias2: 1}) },
		"ReLU":                func() { ReLU(a, b) },
		"ReLUGrad":            func() { ReLUGrad(a, a, b) },
		"Add":                 func() { Add(b, a) },
		"AddBF16":             func() { AddBF16(a, make([]uint16, 4)) },
		"ToBF16":              func() { ToBF16(make([]uint16, 4), a) },
		"FromBF16":            func() { FromBF16(a, make([]uint16, 4)) },
		"Dot":                 func() { Dot(a, b) },
		"Scale":               func() { Scale(a, b, 1) },
		"ScaleSub":            func() { ScaleSub(a, a, b, 1, 1) },
		"NormAffine":          func() { NormAffine(a, a, a, b, Norm{}) },
		"NormAffineScalar":    func() { NormAffineScalar(a, b, Norm{}, 1, 0) },
		"NormGradAffine":      func() { NormGradAffine(a, a, a, a, b, Norm{}) },
		"NormGradSums":        func() { NormGradSums(a, b, Norm{}) },
		"NormGradInput":       func() { NormGradInput(a, a, b, a, Norm{}, 0, 0) },
		"NormGradInputScalar": func() { NormGradInputScalar(b, a, a, Norm{}, 1, 0, 0) },
		"GELU":                func() { GELU(a, b) },
		"GELUGrad":            func() { GELUGrad(a, a, b) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with lengths 3 and 4 did not panic", name)
				}
			}()
			f()
		}()
	}
}

// TestImpl checks that the implementation in use is the best this CPU
// offers: the assembly whenever it is built and usable.
func TestImpl(t *testing.T) {
	all := implementations()
	if got, want := Impl(), all[len(all)-1].name; got != want {
		t.Errorf("Impl() = %q, want %q", got, want)
	}
	t.Logf("implementations: %d, in use: %s", len(all), Impl())
}

func TestNoAllocation(t *testing.T) {
	x, y, z, w := make([]float32, 1001), make([]float32, 1001), make([]float32, 1001), make([]float32, 1001)
	h := make([]uint16, 1001)
	allocs := testing.AllocsPerRun(10, func() {
		_ = Max(x)
		_ = ExpSum(x, 0)
		_ = ExpScale(y, x, 0, 1)
		_ = ExpPairScale(y, x, 0, z, 1)
		AdamW(w, x, y, z, AdamWStep{Beta1: 0.9, Beta2: 0.99, Bias1: 1, Bias2: 1, Eps: 1e-8, LR: 1e-3})
		ReLU(y, x)
		ReLUGrad(y, x, z)
		Add(y, x)
		ToBF16(h, x)
		FromBF16(y, h)
		AddBF16(y, h)
		_ = Dot(x, y)
		Scale(y, x, 2)
		ScaleSub(y, x, z, 1, 2)
		GELU(y, x)
		GELUGrad(y, z, x)
		c := NewNorm(0.5, 2)
		_, _ = Moments(x, 1)
		NormAffine(y, x, z, w, c)
		NormAffineScalar(y, x, c, 2, 1)
		_, _ = NormGradAffine(y, z, w, x, x, c)
		_, _ = NormGradSums(w, x, c)
		NormGradInput(y, w, x, z, c, 0.5, 0.25)
		NormGradInputScalar(y, w, x, c, 2, 0.5, 0.25)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per call", allocs)
	}
}

func clone(x []float32) []float32 { return append([]float32(nil), x...) }

func equal(a, b []float32) bool {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return len(a) == len(b)
}

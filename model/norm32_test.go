package model

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/infonce/infonce/vec"
)

// normValues draws n float32 values of the given mean and spread.
func normValues(rng *rand.Rand, n int, mean, spread float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(mean + spread*rng.NormFloat64())
	}
	return x
}

// maxRelErr is max_i |got_i − want_i| / max_i |want_i| (the absolute error
// when want is 0).
func maxRelErr(got []float32, want []float64) float64 {
	var d, m float64
	for i, w := range want {
		d = max(d, math.Abs(float64(got[i])-w))
		m = max(m, math.Abs(w))
	}
	if m == 0 {
		return d
	}
	return d / m
}

// sumErr is max_j |got_j − want_j| / max_j scale_j for a gradient that
// is a sum over rows, scale_j being the sum of the magnitudes of its
// terms: float32 summation is accurate to that scale, not to the sum
// itself, which may cancel. It is the absolute error when every term is 0.
func sumErr(got []float32, want, scale []float64) float64 {
	var d, m float64
	for j, w := range want {
		d = max(d, math.Abs(float64(got[j])-w))
		m = max(m, scale[j])
	}
	if m == 0 {
		return d
	}
	return d / m
}

// normErrs holds the largest relative errors of a float32 norm against
// its float64 twin: y, ∂L/∂x, and the gain and bias gradients.
type normErrs struct{ y, dx, dgain, dbias float64 }

// The float32 norms of Fast32 must agree with the float64 path to these
// relative errors: a few float32 roundings (2⁻²⁴ ≈ 6·10⁻⁸) of y, more for
// the gradients, sums over a row, a group or the whole batch; the errors
// of the parameter gradients are relative to the magnitudes of their
// terms (sumErr).
const (
	normTolY    = 5e-7
	normTolGrad = 1e-6
)

// TestLayerNormFast32 compares LayerNorm with Fast32 on float32 rows with
// the float64 LayerNorm on the same values, with both of package vec's
// implementations: rows of every tail length of an 8-lane vector, means
// large against the spread, rows of zero or tiny variance, and the widths
// of the ViT and text towers.
func TestLayerNormFast32(t *testing.T) {
	cases := []struct {
		name         string
		rows, n      int
		mean, spread float64
	}{
		{"width1", 3, 1, 0, 1},
		{"width5", 7, 5, 0.5, 2},
		{"width8", 9, 8, 0, 1},
		{"width17", 100, 17, -1, 0.3},
		{"vit-192", 300, 192, 0, 1},
		{"text-128", 200, 128, 0.2, 3},
		{"mean-1e3", 50, 192, 1e3, 1},
		{"mean-1e4-width33", 40, 33, -1e4, 1},
		{"spread-1e-3", 30, 64, 1, 1e-3},
		{"constant", 5, 24, 2.5, 0},
		{"many-blocks", 3*normRowBlock + 5, 40, 0, 1},
	}
	for _, tc := range cases {
		rng := rand.New(rand.NewPCG(uint64(tc.rows), uint64(tc.n)))
		x := normValues(rng, tc.rows*tc.n, tc.mean, tc.spread)
		dy := normValues(rng, tc.rows*tc.n, 0, 1)
		gain, bias := normValues(rng, tc.n, 1, 0.5), normValues(rng, tc.n, 0, 0.5)
		ref := &LayerNorm[float64]{N: tc.n, Gain: widen(gain), Bias: widen(bias),
			DGain: make([]float64, tc.n), DBias: make([]float64, tc.n)}
		y64, err := ref.Forward(widen(x), tc.rows)
		if err != nil {
			t.Fatal(err)
		}
		dx64, err := ref.Backward(widen(dy))
		if err != nil {
			t.Fatal(err)
		}
		sg, sb := make([]float64, tc.n), make([]float64, tc.n) // Σ_rows |dy ⊙ x̂|, Σ_rows |dy|
		for i, v := range dy {
			sg[i%tc.n] += math.Abs(float64(v) * ref.xhat[i])
			sb[i%tc.n] += math.Abs(float64(v))
		}
		for _, impl := range []string{"go", "avx2"} {
			prev, err := vec.Use(impl)
			if err != nil {
				t.Logf("skipping vec %q: %v", impl, err)
				continue
			}
			l := &LayerNorm[float32]{N: tc.n, Gain: gain, Bias: bias, Fast32: true,
				DGain: make([]float32, tc.n), DBias: make([]float32, tc.n)}
			y, err := l.Forward(x, tc.rows)
			if err != nil {
				t.Fatal(err)
			}
			dx, err := l.Backward(dy)
			if err != nil {
				t.Fatal(err)
			}
			vec.Use(prev)
			e := normErrs{maxRelErr(y, y64), maxRelErr(dx, dx64), sumErr(l.DGain, ref.DGain, sg), sumErr(l.DBias, ref.DBias, sb)}
			t.Logf("%s, vec %q: relative errors y %.2g, ∂L/∂x %.2g, ∂L/∂g %.2g, ∂L/∂β %.2g", tc.name, impl, e.y, e.dx, e.dgain, e.dbias)
			if e.y > normTolY || e.dx > normTolGrad || e.dgain > normTolGrad || e.dbias > normTolGrad {
				t.Errorf("%s, vec %q: relative errors %+v, want y within %g and the gradients within %g", tc.name, impl, e, normTolY, normTolGrad)
			}
		}
	}
}

// TestGroupNormFast32 compares GroupNorm with Fast32 with the float64
// GroupNorm on the same values, as TestLayerNormFast32 does.
func TestGroupNormFast32(t *testing.T) {
	cases := []struct {
		name         string
		b, c, g, s   int
		mean, spread float64
	}{
		{"small", 2, 4, 2, 3, 0, 1},
		{"odd", 3, 6, 3, 5, 0.5, 2},
		{"instance", 2, 8, 8, 9, 0, 1},
		{"one-group", 2, 32, 1, 17, -1, 0.5},
		{"stage-16x16", 4, 16, 4, 256, 0, 1},
		{"mean-1e3", 2, 8, 2, 64, 1e3, 1},
		{"constant", 2, 4, 2, 8, 3, 0},
	}
	for _, tc := range cases {
		rng := rand.New(rand.NewPCG(uint64(tc.c), uint64(tc.s)))
		n := tc.b * tc.c * tc.s
		x, dy := normValues(rng, n, tc.mean, tc.spread), normValues(rng, n, 0, 1)
		gain, bias := normValues(rng, tc.c, 1, 0.5), normValues(rng, tc.c, 0, 0.5)
		ref := &GroupNorm[float64]{C: tc.c, G: tc.g, S: tc.s, Gain: widen(gain), Bias: widen(bias),
			DGain: make([]float64, tc.c), DBias: make([]float64, tc.c)}
		y64, err := ref.Forward(widen(x), tc.b)
		if err != nil {
			t.Fatal(err)
		}
		dx64, err := ref.Backward(widen(dy))
		if err != nil {
			t.Fatal(err)
		}
		sg, sb := make([]float64, tc.c), make([]float64, tc.c) // Σ |dy ⊙ x̂|, Σ |dy| per channel
		for i, v := range dy {
			ch := i / tc.s % tc.c
			sg[ch] += math.Abs(float64(v) * ref.xhat[i])
			sb[ch] += math.Abs(float64(v))
		}
		for _, impl := range []string{"go", "avx2"} {
			prev, err := vec.Use(impl)
			if err != nil {
				t.Logf("skipping vec %q: %v", impl, err)
				continue
			}
			l := &GroupNorm[float32]{C: tc.c, G: tc.g, S: tc.s, Gain: gain, Bias: bias, Fast32: true,
				DGain: make([]float32, tc.c), DBias: make([]float32, tc.c)}
			y, err := l.Forward(x, tc.b)
			if err != nil {
				t.Fatal(err)
			}
			dx, err := l.Backward(dy)
			if err != nil {
				t.Fatal(err)
			}
			vec.Use(prev)
			e := normErrs{maxRelErr(y, y64), maxRelErr(dx, dx64), sumErr(l.DGain, ref.DGain, sg), sumErr(l.DBias, ref.DBias, sb)}
			t.Logf("%s, vec %q: relative errors y %.2g, ∂L/∂x %.2g, ∂L/∂γ %.2g, ∂L/∂β %.2g", tc.name, impl, e.y, e.dx, e.dgain, e.dbias)
			if e.y > normTolY || e.dx > normTolGrad || e.dgain > normTolGrad || e.dbias > normTolGrad {
				t.Errorf("%s, vec %q: relative errors %+v, want y within %g and the gradients within %g", tc.name, impl, e, normTolY, normTolGrad)
			}
		}
	}
}

// normRun is one Forward and Backward of a float32 norm with fresh
// gradients: y, ∂L/∂x and the parameter gradients, copied.
type normRun struct{ y, dx, dgain, dbias []float32 }

func (r normRun) same(o normRun) bool {
	for _, p := range [][2][]float32{{r.y, o.y}, {r.dx, o.dx}, {r.dgain, o.dgain}, {r.dbias, o.dbias}} {
		if len(p[0]) != len(p[1]) {
			return false
		}
		for i := range p[0] {
			if math.Float32bits(p[0][i]) != math.Float32bits(p[1][i]) {
				return false
			}
		}
	}
	return true
}

// TestNormFast32SameBitsForAnyGOMAXPROCS runs the float32 LayerNorm and
// GroupNorm of Fast32, large enough to be split over goroutines, with
// GOMAXPROCS 1, 2 and 3: y, ∂L/∂x and the parameter gradients (summed
// across rows and images) must be the same bits.
func TestNormFast32SameBitsForAnyGOMAXPROCS(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	rng := rand.New(rand.NewPCG(31, 32))
	const rows, n = 1000, 192
	const b, c, g, s = 16, 16, 4, 256
	lx, ldy := normValues(rng, rows*n, 0.3, 1.5), normValues(rng, rows*n, 0, 1)
	gx, gdy := normValues(rng, b*c*s, -0.2, 2), normValues(rng, b*c*s, 0, 1)
	lg, lb := normValues(rng, n, 1, 0.5), normValues(rng, n, 0, 0.5)
	gg, gb := normValues(rng, c, 1, 0.5), normValues(rng, c, 0, 0.5)
	run := func(l Layer[float32], x, dy []float32, batch int, dgain, dbias []float32) normRun {
		clear(dgain)
		clear(dbias)
		y, err := l.Forward(x, batch)
		if err != nil {
			t.Fatal(err)
		}
		dx, err := l.Backward(dy)
		if err != nil {
			t.Fatal(err)
		}
		cp := func(v []float32) []float32 { return append([]float32(nil), v...) }
		return normRun{cp(y), cp(dx), cp(dgain), cp(dbias)}
	}
	var firstLN, firstGN normRun
	for _, procs := range []int{1, 2, 3} {
		runtime.GOMAXPROCS(procs)
		ln := &LayerNorm[float32]{N: n, Gain: lg, Bias: lb, DGain: make([]float32, n), DBias: make([]float32, n), Fast32: true}
		gn := &GroupNorm[float32]{C: c, G: g, S: s, Gain: gg, Bias: gb, DGain: make([]float32, c), DBias: make([]float32, c), Fast32: true}
		rl := run(ln, lx, ldy, rows, ln.DGain, ln.DBias)
		rg := run(gn, gx, gdy, b, gn.DGain, gn.DBias)
		// The split really happens: as many parts as procs, forward and
		// backward.
		lnParts := [2]int{ln.fast.par.numParts(rows, max(1, normParallelMin/n)),
			ln.fast.par.numParts((rows+normRowBlock-1)/normRowBlock, max(1, normParallelMin/(normRowBlock*n)))}
		gnParts := gn.fast.par.numParts(b*g, max(1, normParallelMin/(c/g*s)))
		if lnParts != [2]int{procs, procs} || gnParts != procs {
			t.Fatalf("GOMAXPROCS %d: LayerNorm in %v parts, GroupNorm in %d", procs, lnParts, gnParts)
		}
		if procs == 1 {
			firstLN, firstGN = rl, rg
			continue
		}
		if !rl.same(firstLN) {
			t.Errorf("LayerNorm: GOMAXPROCS %d gives other bits than GOMAXPROCS 1", procs)
		}
		if !rg.same(firstGN) {
			t.Errorf("GroupNorm: GOMAXPROCS %d gives other bits than GOMAXPROCS 1", procs)
		}
	}
}

// TestNormFast32AllocatesNothing: once warm, a Forward and Backward of the
// split float32 norms allocate nothing, for the batch of the warm-up and
// for a smaller one.
func TestNormFast32AllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	rng := rand.New(rand.NewPCG(1, 2))
	const rows, n = 600, 96
	const b, c, g, s = 8, 8, 2, 256
	ln := &LayerNorm[float32]{N: n, Gain: normValues(rng, n, 1, 0.1), Bias: normValues(rng, n, 0, 0.1),
		DGain: make([]float32, n), DBias: make([]float32, n), Fast32: true}
	gn := &GroupNorm[float32]{C: c, G: g, S: s, Gain: normValues(rng, c, 1, 0.1), Bias: normValues(rng, c, 0, 0.1),
		DGain: make([]float32, c), DBias: make([]float32, c), Fast32: true}
	lx, gx := normValues(rng, rows*n, 0, 1), normValues(rng, b*c*s, 0, 1)
	step := func(rows, b int) {
		for _, r := range []struct {
			l     Layer[float32]
			x     []float32
			batch int
		}{{ln, lx[:rows*n], rows}, {gn, gx[:b*c*s], b}} {
			y, err := r.l.Forward(r.x, r.batch)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.l.Backward(y); err != nil {
				t.Fatal(err)
			}
		}
	}
	step(rows, b)
	if a := testing.AllocsPerRun(20, func() { step(rows, b) }); a != 0 {
		t.Errorf("%v allocations a step, want 0", a)
	}
	if a := testing.AllocsPerRun(20, func() { step(rows/2, b/2) }); a != 0 {
		t.Errorf("%v allocations a step with a smaller batch, want 0", a)
	}
}

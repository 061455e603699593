package model

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/infonce/infonce/vec"
)

// TestGELUFast32 compares the float32 GELU of Fast32 with the exact
// float64 GELU on a grid over [−12, 12] and on random inputs, with both of
// package vec's implementations: y and ∂L/∂x agree to a few float32 ulps.
func TestGELUFast32(t *testing.T) {
	var x32 []float32
	for v := -12.0; v <= 12; v += 1.0 / 64 {
		x32 = append(x32, float32(v))
	}
	rng := rand.New(rand.NewPCG(8, 8))
	for range 3000 {
		x32 = append(x32, float32(2*rng.NormFloat64()))
	}
	x32 = append(x32, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 40, -40)
	dy32 := make([]float32, len(x32))
	for i := range dy32 {
		dy32[i] = 1
	}
	exact := &GELU[float64]{N: len(x32)}
	y64, _ := exact.Forward(widen(x32), 1)
	dx64, _ := exact.Backward(widen(dy32))
	for _, impl := range []string{"go", "avx2"} {
		prev, err := vec.Use(impl)
		if err != nil {
			t.Logf("skipping vec %q: %v", impl, err)
			continue
		}
		g := &GELU[float32]{N: len(x32), Fast32: true}
		y32, err := g.Forward(x32, 1)
		if err != nil {
			t.Fatal(err)
		}
		dx32, err := g.Backward(dy32)
		if err != nil {
			t.Fatal(err)
		}
		vec.Use(prev)
		// y = x Φ(x) and ∂y/∂x = Φ + x φ are sums of terms no larger than
		// max(1, |x|): their absolute errors are measured in ulps of that
		// scale, which is what float32 can resolve (a relative error would
		// be meaningless where Φ + xφ crosses 0, near x = −0.75).
		var worstY, worstD float64
		for i, v := range x32 {
			scale := math.Max(1, math.Abs(float64(v))) * 0x1p-23
			worstY = math.Max(worstY, math.Abs(float64(y32[i])-y64[i])/scale)
			worstD = math.Max(worstD, math.Abs(float64(dx32[i])-dx64[i])/scale)
		}
		t.Logf("vec %q: largest error %.2f ulp of max(1, |x|) in y, %.2f in ∂L/∂x", impl, worstY, worstD)
		if worstY > 2 || worstD > 2 {
			t.Errorf("vec %q: errors of %.2f and %.2f ulp, want at most 2", impl, worstY, worstD)
		}
	}
}

// TestGELUParallelIsSerial: the GELU of a layer large enough to be split
// over goroutines equals package vec's kernels over the whole layer bit for
// bit, forward and backward, at every GOMAXPROCS and for lengths that end
// inside a block and inside an 8-lane vector.
func TestGELUParallelIsSerial(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	rng := rand.New(rand.NewPCG(7, 8))
	const minLen = elementwiseParallelMin
	for _, n := range []int{minLen - 1, 2*minLen + 77, 5*minLen + elementwiseChunk/2 + 3} {
		x, dy := make([]float32, n), make([]float32, n)
		for i := range x {
			x[i], dy[i] = float32(rng.NormFloat64()*3), float32(rng.NormFloat64())
		}
		y0, dx0 := make([]float32, n), make([]float32, n)
		vec.GELU(y0, x)
		vec.GELUGrad(dx0, dy, x)
		for _, procs := range []int{1, 2, 3, 8} {
			runtime.GOMAXPROCS(procs)
			g := GELU[float32]{N: n, Fast32: true}
			y, err := g.Forward(x, 1)
			if err != nil {
				t.Fatal(err)
			}
			dx, err := g.Backward(dy)
			if err != nil {
				t.Fatal(err)
			}
			for i := range x {
				if math.Float32bits(y[i]) != math.Float32bits(y0[i]) || math.Float32bits(dx[i]) != math.Float32bits(dx0[i]) {
					t.Fatalf("n %d, GOMAXPROCS %d, element %d: y %v dx %v, serial %v %v", n, procs, i, y[i], dx[i], y0[i], dx0[i])
				}
			}
		}
	}
}

// TestGELUParallelAllocatesNothing: once warm, a Forward and Backward of
// the split GELU allocate nothing (its bodies are method values made once,
// and parallelFor hands the parts to their goroutines through a channel).
func TestGELUParallelAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	n := 4 * elementwiseParallelMin
	x, dy := make([]float32, n), make([]float32, n)
	for i := range x {
		x[i], dy[i] = float32(i%97)/10-4, 1
	}
	g := GELU[float32]{N: n, Fast32: true}
	step := func() {
		if _, err := g.Forward(x, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := g.Backward(dy); err != nil {
			t.Fatal(err)
		}
	}
	step()
	if a := testing.AllocsPerRun(20, step); a != 0 {
		t.Errorf("%v allocations a step, want 0", a)
	}
}

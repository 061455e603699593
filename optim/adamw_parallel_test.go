package optim

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// The float32 AdamW update split over several goroutines gives the same
// bits as on one, with segments whose lengths are not multiples of 8 (so
// that the scalar tails of the vector kernel are in play).
func TestAdamWParallelSameBits(t *testing.T) {
	const n = 3*parallelMin + 12345
	groups := []Group{
		{Name: "a", Off: 0, Len: 70001},
		{Name: "b", Off: 70001, Len: 13, NoDecay: true},
		{Name: "c", Off: 70014, Len: n - 70014 - 7},
		{Name: "d", Off: n - 7, Len: 7, NoDecay: true},
	}
	run := func(procs int) []float32 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		rng := rand.New(rand.NewPCG(5, 6))
		w, g := make([]float32, n), make([]float32, n)
		for i := range w {
			w[i] = float32(rng.NormFloat64())
		}
		cfg := DefaultAdamWConfig()
		cfg.WeightDecay = 0.1
		o := NewAdamW[float32](n, groups, cfg)
		for range 3 {
			for i := range g {
				g[i] = float32(rng.NormFloat64() * 1e-2)
			}
			if err := o.Step(w, g, 1e-3); err != nil {
				t.Fatal(err)
			}
		}
		return append(w, append(o.m, o.v...)...)
	}
	want := run(1)
	for _, procs := range []int{2, 3, 5} {
		got := run(procs)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("GOMAXPROCS %d: element %d of w‖m‖v is %v, %v on one goroutine", procs, i, got[i], want[i])
			}
		}
	}
}

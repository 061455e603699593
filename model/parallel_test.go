package model

import (
	"runtime"
	"sync/atomic"
	"testing"
)

// TestParallelForCoversEachIndexOnce runs parallelFor over ranges of
// several sizes and GOMAXPROCS and checks that every index is visited
// exactly once, by contiguous parts numbered 0…P−1.
func TestParallelForCoversEachIndexOnce(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, tc := range []struct{ procs, n, minPer, wantP int }{
		{1, 100, 1, 1},
		{2, 100, 1, 2},
		{2, 100, 60, 1},
		{4, 10, 1, 4},
		{4, 3, 1, 3},
		{3, 0, 1, 1},
	} {
		runtime.GOMAXPROCS(tc.procs)
		var f parallelFor
		seen := make([]atomic.Int32, tc.n)
		var parts [8]atomic.Int32
		P := f.run(tc.n, tc.minPer, func(k, lo, hi int) {
			parts[k].Add(1)
			for i := lo; i < hi; i++ {
				seen[i].Add(1)
			}
		})
		if P != tc.wantP || P != f.numParts(tc.n, tc.minPer) {
			t.Errorf("%+v: %d parts (numParts %d), want %d", tc, P, f.numParts(tc.n, tc.minPer), tc.wantP)
		}
		for k := range P {
			if parts[k].Load() != 1 {
				t.Errorf("%+v: part %d ran %d times", tc, k, parts[k].Load())
			}
		}
		for i := range seen {
			if seen[i].Load() != 1 {
				t.Errorf("%+v: index %d visited %d times", tc, i, seen[i].Load())
			}
		}
	}
}

// TestParallelForAllocatesNothing checks that a run with a body made once
// allocates nothing.
func TestParallelForAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	var f parallelFor
	sums := make([]int, 2)
	body := func(k, lo, hi int) {
		for i := lo; i < hi; i++ {
			sums[k] += i
		}
	}
	f.run(1000, 1, body)
	if a := testing.AllocsPerRun(50, func() { f.run(1000, 1, body) }); a != 0 {
		t.Errorf("%v allocations a run, want 0", a)
	}
}

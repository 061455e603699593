package worker

import (
	"slices"
	"testing"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/dataset"
)

// With more than one rank, every step after the first takes its input from
// the prefetch, and the run is still the single process's: per-step losses
// and final parameters within float32 tolerance, for every objective.
func TestPrefetchedStepsEqualSingleProcess(t *testing.T) {
	const steps = 4
	for _, objective := range []string{CLIP, SimCLR, MoCo} {
		t.Run(objective, func(t *testing.T) {
			cfg := smallConfig(t, objective)
			f32 := func(r *allreduce.Ring) Comm[float32] { return r }
			one, want := stepOnRanks(t, cfg, 1, steps, f32)
			for _, K := range []int{2, 3} {
				trs, got := stepOnRanks(t, cfg, K, steps, f32)
				for k, tr := range trs {
					if tr.prefetched != steps-1 {
						t.Errorf("K=%d rank %d: %d of %d steps took prefetched input", K, k, tr.prefetched, steps-1)
					}
				}
				if one[0].prefetched != 0 {
					t.Errorf("single process prefetched %d steps", one[0].prefetched)
				}
				for s := range want {
					if d := relDiff([]float64{got[s]}, []float64{want[s]}); d > 1e-5 {
						t.Errorf("K=%d step %d: loss %v, single process %v (rel %.2g)", K, s, got[s], want[s], d)
					}
				}
				if d := relDiff(trs[0].Model.P.W, one[0].Model.P.W); d > 1e-5 {
					t.Errorf("K=%d: parameters differ from the single process by %.2g", K, d)
				}
			}
		})
	}
}

// The prefetched rows are exactly the rows the step would draw, and they
// are used only for the step, ring and samples they were drawn for.
func TestPrefetchIsTakenOnlyForItsStep(t *testing.T) {
	for _, objective := range []string{CLIP, SimCLR} {
		t.Run(objective, func(t *testing.T) {
			cfg := smallConfig(t, objective)
			tr, err := NewTrainer[float32](cfg, smallMNIST(t, 512, 10))
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			const K, k = 2, 1
			lo, hi := dataset.Shard(cfg.Batch, K, k)
			localOf := func(step int64) []int {
				_, idx := tr.Sampler.Batch(step, nil)
				return idx[lo:hi]
			}
			drawn := func(step int64) []float32 {
				local := localOf(step)
				x := make([]float32, tr.inputRows(len(local))*tr.pixels())
				tr.drawRows(x, nil, step, local, 0, len(local))
				return x
			}
			cases := []struct {
				name   string
				step   int64
				K, k   int
				local  []int
				accept bool
			}{
				{"same step and ring", 5, K, k, localOf(5), true},
				{"another step", 6, K, k, localOf(6), false},
				{"another ring size", 5, 3, k, localOf(5), false},
				{"another rank", 5, K, 0, localOf(5), false},
				{"other samples", 5, K, k, localOf(7), false},
			}
			// take runs the step's data phase and reports whether it took
			// the prefetched rows.
			take := func(step int64, K, k int, local []int) bool {
				before := tr.prefetched
				tr.fillInput(step, K, k, local)
				return tr.prefetched > before
			}
			for i, c := range cases {
				tr.startPrefetch(5, K, k, lo, hi)
				// Some rows drawn in "waits", the rest by the step.
				for range i {
					if !tr.PrefetchSome() {
						t.Fatalf("%s: nothing to prefetch", c.name)
					}
				}
				if got := take(c.step, c.K, c.k, c.local); got != c.accept {
					t.Errorf("%s: taken %v, want %v", c.name, got, c.accept)
				}
				if c.accept && !slices.Equal(tr.x, drawn(5)) {
					t.Errorf("%s: the prefetched rows differ from the rows the step draws", c.name)
				}
				if tr.pf.active || tr.PrefetchSome() {
					t.Errorf("%s: the prefetch is still active after the step took its input", c.name)
				}
			}
			// Neither a single process nor the step after the run's last
			// prefetches.
			tr.startPrefetch(5, 1, 0, 0, cfg.Batch)
			if tr.PrefetchSome() {
				t.Error("a single process prefetches")
			}
			tr.startPrefetch(tr.totalSteps, K, k, lo, hi)
			if tr.PrefetchSome() {
				t.Error("a prefetch started past the last step")
			}
			// Every row drawn ahead: nothing left for the step to draw.
			tr.startPrefetch(3, K, k, lo, hi)
			for tr.PrefetchSome() {
			}
			if tr.pf.next != hi-lo || !take(3, K, k, localOf(3)) || !slices.Equal(tr.x, drawn(3)) {
				t.Error("a fully prefetched step does not get exactly its rows")
			}
		})
	}
}

// The gradient is zeroed in the waits only between a step's start and its
// backward pass: pieces at a time once the rows are drawn, the rest when
// the step finishes it, and never after that.
func TestGradientZeroedAheadOnlyBeforeBackward(t *testing.T) {
	cfg := smallConfig(t, CLIP)
	tr, err := NewTrainer[float32](cfg, smallMNIST(t, 512, 10))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	g := tr.Model.P.G
	fill := func() {
		for i := range g {
			g[i] = 1
		}
	}
	zeros := func() (n int) {
		for _, v := range g {
			if v == 0 {
				n++
			}
		}
		return n
	}
	if len(g) <= zeroPiece {
		t.Fatalf("a gradient of %d elements is cleared in one piece; the test needs more", len(g))
	}

	// A single process zeroes at once.
	fill()
	tr.startZeroGrad(1)
	if zeros() != len(g) {
		t.Fatal("a single process did not zero the gradient at the start of the step")
	}

	// A ring: rows first, then the gradient a piece at a time.
	fill()
	lo, hi := dataset.Shard(cfg.Batch, 2, 0)
	tr.startPrefetch(1, 2, 0, lo, hi)
	tr.startZeroGrad(2)
	if zeros() != 0 {
		t.Fatal("the gradient was zeroed before any wait")
	}
	for tr.pf.next < hi-lo {
		tr.PrefetchSome()
	}
	if zeros() != 0 {
		t.Fatal("the gradient was zeroed before the rows were drawn")
	}
	if !tr.PrefetchSome() || zeros() != zeroPiece {
		t.Fatalf("one piece zeroed %d elements, want %d", zeros(), zeroPiece)
	}
	tr.finishZeroGrad()
	if zeros() != len(g) {
		t.Fatalf("after the step finished it, %d of %d elements are zero", zeros(), len(g))
	}
	// The backward pass owns the buffer now.
	fill()
	for tr.PrefetchSome() {
	}
	if zeros() != 0 {
		t.Fatal("a wait after the backward pass began zeroed the gradient")
	}
	if tr.zeroedAhead != zeroPiece {
		t.Errorf("zeroedAhead %d, want %d", tr.zeroedAhead, zeroPiece)
	}
}

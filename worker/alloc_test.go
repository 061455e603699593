package worker

import (
	"context"
	"runtime"
	"testing"
)

// defaultCLIPTrainer is the default CLIP run (model, batch 512, AdamW) on the
// first n training images of MNIST.
func defaultCLIPTrainer(t testing.TB, n int) *Trainer[float32] {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Out = t.TempDir()
	tr, err := NewTrainer[float32](cfg, smallMNIST(t, n, 10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

// A whole training step of the default CLIP run (sample, encode, loss,
// backward, reduce, AdamW) allocates nothing once the buffers of the batch
// shape exist.
func TestStepAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector empties sync.Pools, so the pooled packing buffers of the matrix kernel are reallocated")
	}
	if testing.Short() {
		t.Skip("a few steps of the full default model; skipped with -short")
	}
	tr := defaultCLIPTrainer(t, 2048)
	ctx := context.Background()
	step := int64(0)
	run := func() {
		if _, err := tr.Step(ctx, Single[float32]{}, step); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		step++
	}
	for range 3 { // warm-up: buffers of the batch shape, pooled scratch
		run()
	}
	if got := testing.AllocsPerRun(5, run); got != 0 {
		t.Errorf("Trainer.Step allocates %v times per step in steady state, want 0", got)
	}
}

// The same holds with two threads, where the matrix kernel splits its
// products over worker goroutines that meet at barriers. testing.AllocsPerRun
// runs at GOMAXPROCS 1, so this counts the heap allocations of the whole
// process around rounds of steps instead. Blocking and waking goroutines
// takes the runtime's bookkeeping records (sudogs, goroutine descriptors)
// from per-P caches that fill up over the first steps, and a batch with
// longer captions than any before grows the token buffer: the test asks
// that a steady state with no allocation at all is reached within a bounded
// number of rounds, and that it holds for a whole round.
func TestStepAllocatesNothingTwoThreads(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on synchronisation, so heap allocation counts are not meaningful under it")
	}
	if testing.Short() {
		t.Skip("rounds of steps of the full default model; skipped with -short")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	tr := defaultCLIPTrainer(t, 2048)
	ctx := context.Background()
	step := int64(0)
	run := func(n int) {
		for range n {
			if _, err := tr.Step(ctx, Single[float32]{}, step); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			step++
		}
	}
	run(3)
	const rounds, steps = 8, 6
	var counts []uint64
	for range rounds {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		run(steps)
		runtime.ReadMemStats(&after)
		n := after.Mallocs - before.Mallocs
		if n == 0 {
			t.Logf("rounds of %d steps at GOMAXPROCS 2: heap allocations %v, then 0", steps, counts)
			return
		}
		counts = append(counts, n)
	}
	t.Errorf("no round of %d steps at GOMAXPROCS 2 ran without heap allocations: %v per round", steps, counts)
}

// BenchmarkStep is one training step of the default CLIP run: the figure
// behind `infonce train`'s samples per second.
func BenchmarkStep(b *testing.B) {
	tr := defaultCLIPTrainer(b, 8192)
	ctx := context.Background()
	for s := range int64(2) {
		if _, err := tr.Step(ctx, Single[float32]{}, s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tr.Step(ctx, Single[float32]{}, int64(2+i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*float64(tr.Cfg.Batch)/b.Elapsed().Seconds(), "samples/s")
}

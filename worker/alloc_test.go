package worker

import (
	"context"
	"testing"

	"github.com/infonce/infonce/gemm"
)

// skipUnlessAllocFree skips a test of heap allocation counts where they say
// nothing about the step: under the race detector, and with gonum's pure-Go
// matrix kernel (CPUs without AVX2, the purego build tag), whose parallel
// products allocate inside every call.
func skipUnlessAllocFree(t *testing.T) {
	t.Helper()
	if raceEnabled {
		t.Skip("the race detector empties sync.Pools and allocates on synchronisation, so allocation counts are not meaningful under it")
	}
	if _, ok := gemm.Current().(gemm.Gonum); ok {
		t.Skip("the matrix kernel here is gonum's, whose parallel products allocate inside every call; the allocation-free kernels are the assembly ones")
	}
	if testing.Short() {
		t.Skip("steps of the full default model; skipped with -short")
	}
}

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
// shape exist. testing.AllocsPerRun runs the step at GOMAXPROCS 1, where
// every product stays on the calling goroutine. With more threads the
// step's own code allocates nothing either, but parking and waking the
// worker goroutines makes the Go runtime allocate its bookkeeping records
// (sudogs, goroutine descriptors) until its per-P caches have filled, which
// takes a few hundred steps; BenchmarkStep's allocs/op shows it.
func TestStepAllocatesNothing(t *testing.T) {
	skipUnlessAllocFree(t)
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

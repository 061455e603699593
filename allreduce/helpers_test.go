package allreduce

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

// onAll runs f on every ring concurrently and returns the errors by rank.
func onAll(rings []*Ring, f func(r *Ring) error) []error {
	errs := make([]error, len(rings))
	var wg sync.WaitGroup
	for i, r := range rings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(r)
		}()
	}
	wg.Wait()
	return errs
}

func mustAll(t testing.TB, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", i, err)
		}
	}
}

func closeAll(rings []*Ring) {
	onAll(rings, func(r *Ring) error { return r.Close() })
}

// checkGoroutines fails t if the goroutine count does not settle back to
// base (goroutines of finished tests exit asynchronously).
func checkGoroutines(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutine leak: %d running, %d before\n%s", n, base, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }

// memRings builds k rings in memory; cleanup closes them.
func memRings(t testing.TB, k int, cfg Config) []*Ring {
	t.Helper()
	rings, err := NewMemRings(k, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAll(rings) })
	return rings
}

func fill32(rng *rand.Rand, x []float32) {
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
}

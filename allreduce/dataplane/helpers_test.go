package dataplane

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/infonce/infonce/allreduce"
)

// onAll runs f on every ring concurrently and returns the errors by rank.
func onAll(rings []*allreduce.Ring, f func(r *allreduce.Ring) error) []error {
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

func closeAll(rings []*allreduce.Ring) {
	onAll(rings, func(r *allreduce.Ring) error { return r.Close() })
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

// netRings builds k rings over k servers on loopback with the given
// transport; cleanup closes rings and servers.
func netRings(t testing.TB, k int, cfg allreduce.Config) []*allreduce.Ring {
	t.Helper()
	return netRingsWith(t, k, cfg, nil)
}

// netRingsWith is netRings with each rank's configuration passed through
// per (when not nil) before its ring is built.
func netRingsWith(t testing.TB, k int, cfg allreduce.Config, per func(rank int, c *allreduce.Config)) []*allreduce.Ring {
	t.Helper()
	srvs := make([]*Server, k)
	peers := make([]string, k)
	for i := range srvs {
		s, err := Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srvs[i], peers[i] = s, s.Addr()
	}
	rings := make([]*allreduce.Ring, k)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mustAll(t, onAll(rings, func(*allreduce.Ring) error { return nil }))
	errs := make([]error, k)
	var wg sync.WaitGroup
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := cfg
			c.Rank, c.Peers = i, peers
			if per != nil {
				per(i, &c)
			}
			rings[i], errs[i] = NewRing(ctx, srvs[i], c)
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		closeAll(rings)
		for _, s := range srvs {
			s.Close()
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("NewRing rank %d: %v", i, err)
		}
	}
	return rings
}

func fill32(rng *rand.Rand, x []float32) {
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
}

package dataplane

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infonce/infonce/allreduce"
)

// checkFailure asserts that err is a *allreduce.PeerError of generation gen for op
// wrapping want.
func checkFailure(t *testing.T, rank int, err error, op string, gen uint64, want ...error) {
	t.Helper()
	var pe *allreduce.PeerError
	if !errors.As(err, &pe) {
		t.Fatalf("rank %d: error %v (%T) is not a *allreduce.PeerError", rank, err, err)
	}
	if pe.Op != op || pe.Generation != gen || pe.Local != rank || pe.Peer == "" {
		t.Fatalf("rank %d: %+v does not name op %q, generation %d and a peer", rank, pe, op, gen)
	}
	for _, w := range want {
		if errors.Is(err, w) {
			return
		}
	}
	t.Fatalf("rank %d: error %v is none of %v", rank, err, want)
}

func TestPeerKilledMidOperation(t *testing.T) {
	base := runtime.NumGoroutine()
	for _, kind := range transportKinds {
		t.Run(kind, func(t *testing.T) {
			const k, victim = 4, 2
			const timeout = 5 * time.Second
			rings := makeRings(t, kind, k, allreduce.Config{JobID: "t", Generation: 7, ChunkBytes: 4096, Timeout: timeout})
			ctx := context.Background()
			start := time.Now()
			var killed sync.Once
			errs := onAll(rings, func(r *allreduce.Ring) error {
				buf := make([]float32, 1<<16)
				for it := 0; ; it++ {
					if r.Rank() == victim && it == 3 {
						// die in the middle of the next all-reduce
						go func() {
							time.Sleep(2 * time.Millisecond)
							killed.Do(func() { r.Transport().Close() })
						}()
					}
					if err := r.AllReduce(ctx, buf); err != nil {
						t.Logf("rank %d after %v: %v", r.Rank(), time.Since(start), err)
						return err
					}
				}
			})
			elapsed := time.Since(start)
			if elapsed > timeout/2 {
				t.Fatalf("ranks took %v to notice the dead peer (deadline %v)", elapsed, timeout)
			}
			for r, err := range errs {
				if r == victim {
					continue
				}
				checkFailure(t, r, err, "allreduce", 7, allreduce.ErrPeerLost)
			}
			// the ring stays broken
			err := rings[0].Barrier(ctx)
			checkFailure(t, 0, err, "barrier", 7, allreduce.ErrPeerLost)
		})
	}
	checkGoroutines(t, base)
}

func TestStalledPeerHitsDeadline(t *testing.T) {
	base := runtime.NumGoroutine()
	for _, kind := range transportKinds {
		t.Run(kind, func(t *testing.T) {
			const k, stalled = 3, 1
			const timeout = 300 * time.Millisecond
			rings := makeRings(t, kind, k, allreduce.Config{JobID: "t", Generation: 2, Timeout: timeout})
			start := time.Now()
			errs := onAll(rings, func(r *allreduce.Ring) error {
				if r.Rank() == stalled {
					return nil // never joins the collective
				}
				return r.AllReduce(context.Background(), make([]float32, 1000))
			})
			elapsed := time.Since(start)
			if elapsed > timeout+time.Second {
				t.Fatalf("ranks took %v, deadline %v", elapsed, timeout)
			}
			for r, err := range errs {
				if r == stalled {
					continue
				}
				// a rank whose own deadline fired reports allreduce.ErrDeadline; a
				// rank whose neighbour gave up first may see allreduce.ErrPeerLost
				checkFailure(t, r, err, "allreduce", 2, allreduce.ErrDeadline, allreduce.ErrPeerLost)
			}
			var deadline int
			for _, err := range errs {
				if errors.Is(err, allreduce.ErrDeadline) && errors.Is(err, context.DeadlineExceeded) {
					deadline++
				}
			}
			if deadline == 0 {
				t.Fatalf("no rank reported allreduce.ErrDeadline: %v", errs)
			}
		})
	}
	checkGoroutines(t, base)
}

func TestCallerContextDeadline(t *testing.T) {
	rings := makeRings(t, "mem", 2, allreduce.Config{JobID: "t", Timeout: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := rings[0].AllReduce(ctx, make([]float32, 10)) // rank 1 never joins
	checkFailure(t, 0, err, "allreduce", 0, allreduce.ErrDeadline)
	if !strings.Contains(err.Error(), "mem:1") {
		t.Fatalf("error %q does not name the peer", err)
	}
}

func TestMismatchedOperationsDetected(t *testing.T) {
	for _, kind := range transportKinds {
		t.Run(kind, func(t *testing.T) {
			rings := makeRings(t, kind, 2, allreduce.Config{JobID: "t", Timeout: 2 * time.Second})
			errs := onAll(rings, func(r *allreduce.Ring) error {
				if r.Rank() == 0 {
					return r.AllReduce(context.Background(), make([]float32, 100))
				}
				return r.AllReduce(context.Background(), make([]float32, 300))
			})
			for r, err := range errs {
				checkFailure(t, r, err, "allreduce", 0, allreduce.ErrMismatch, allreduce.ErrPeerLost)
			}
			rings = makeRings(t, kind, 2, allreduce.Config{JobID: "t", Timeout: 2 * time.Second})
			errs = onAll(rings, func(r *allreduce.Ring) error {
				if r.Rank() == 0 {
					return r.Barrier(context.Background())
				}
				return r.Broadcast(context.Background(), nil, 1)
			})
			if !errors.Is(errs[0], allreduce.ErrMismatch) && !errors.Is(errs[1], allreduce.ErrMismatch) {
				t.Fatalf("barrier against broadcast not detected: %v", errs)
			}
		})
	}
}

func TestCloseFailsPendingAndLaterCalls(t *testing.T) {
	base := runtime.NumGoroutine()
	rings := makeRings(t, "mem", 2, allreduce.Config{JobID: "t"})
	p := rings[0].Start(context.Background(), make([]float32, 100)) // rank 1 never joins
	time.Sleep(10 * time.Millisecond)
	rings[0].Close() // first, so that its own failure reason is the close
	rings[1].Close()
	if err := p.Wait(); !errors.Is(err, allreduce.ErrClosed) {
		t.Fatalf("pending bucket after Close: %v", err)
	}
	if err := rings[0].Barrier(context.Background()); !errors.Is(err, allreduce.ErrClosed) {
		t.Fatalf("barrier after Close: %v", err)
	}
	if err := rings[1].Start(context.Background(), nil).Wait(); !errors.Is(err, allreduce.ErrClosed) {
		t.Fatalf("start after Close: %v", err)
	}
	checkGoroutines(t, base)
}

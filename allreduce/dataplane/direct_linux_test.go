package dataplane

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/shm"
)

// sharedVectors allocates one shm.SharedVector of n elements per rank; cleanup
// frees them after the rings (registered earlier, so run later).
func sharedVectors(t *testing.T, k, n int) []*shm.SharedVector {
	t.Helper()
	vs := make([]*shm.SharedVector, k)
	for i := range vs {
		v, err := shm.NewSharedVector(n)
		if err != nil {
			t.Fatal(err)
		}
		vs[i] = v
	}
	t.Cleanup(func() {
		for i, v := range vs {
			if err := v.Close(); err != nil {
				t.Errorf("rank %d: %v", i, err)
			}
		}
	})
	return vs
}

// directRings builds a allreduce.TransportSHM ring whose rank i has vs[i] (nil: no
// vector).
func directRings(t *testing.T, vs []*shm.SharedVector, cfg allreduce.Config) []*allreduce.Ring {
	t.Helper()
	cfg.Transport = allreduce.TransportSHM
	return netRingsWith(t, len(vs), cfg, func(rank int, c *allreduce.Config) { c.Shared = vs[rank] })
}

func needShm(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(shmDir); err != nil {
		t.Skipf("no %s: %v", shmDir, err)
	}
}

func vecFiles() []string {
	m, _ := filepath.Glob(filepath.Join(shmDir, vecPrefix+"*"))
	return m
}

// TestDirectAllReduce: rings of 2 to 4 ranks on one host sum slices of
// their shared vectors in place, exactly for small integers and with the
// same bits on every rank for random values, over the whole vector, odd
// sub-ranges and ranges shorter than the ring; a buffer outside the vector
// goes around the ring as before; no file is left in /dev/shm.
func TestDirectAllReduce(t *testing.T) {
	needShm(t)
	before := len(vecFiles())
	ctx := context.Background()
	const n = 100_003
	for _, k := range []int{2, 3, 4} {
		vs := sharedVectors(t, k, n)
		rings := directRings(t, vs, allreduce.Config{JobID: "direct"})
		for i, r := range rings {
			if !r.InPlace() {
				t.Fatalf("K=%d rank %d: the ring does not all-reduce in place", k, i)
			}
		}
		ranges := [][2]int{{0, n}, {0, 1}, {5, 5 + k - 1}, {17, 17 + 7*k + 3}, {n - 40_001, n}, {1000, 1000}}
		for _, rg := range ranges {
			for i, v := range vs {
				g := v.Floats()
				for j := range g {
					g[j] = float32(i + j%7)
				}
			}
			mustAll(t, onAll(rings, func(r *allreduce.Ring) error { return r.AllReduce(ctx, vs[r.Rank()].Floats()[rg[0]:rg[1]]) }))
			base := float32(k * (k - 1) / 2)
			for i, v := range vs {
				for j, x := range v.Floats() {
					want := float32(i + j%7)
					if j >= rg[0] && j < rg[1] {
						want = base + float32(k*(j%7))
					}
					if x != want {
						t.Fatalf("K=%d range %v rank %d [%d] = %v, want %v", k, rg, i, j, x, want)
					}
				}
			}
		}
		// Random values: identical bits everywhere, within rounding of the
		// float64 sum.
		rng := newRand(uint64(k))
		in := make([][]float32, k)
		for i, v := range vs {
			fill32(rng, v.Floats())
			in[i] = append([]float32(nil), v.Floats()...)
		}
		mustAll(t, onAll(rings, func(r *allreduce.Ring) error { return r.AllReduce(ctx, vs[r.Rank()].Floats()) }))
		for j := range n {
			var sum, abs float64
			for i := range k {
				sum += float64(in[i][j])
				abs += math.Abs(float64(in[i][j]))
			}
			x := vs[0].Floats()[j]
			if d := math.Abs(float64(x) - sum); d > float64(k)*0x1p-24*abs {
				t.Fatalf("K=%d [%d] = %v, want %v", k, j, x, sum)
			}
			for i := 1; i < k; i++ {
				if y := vs[i].Floats()[j]; math.Float32bits(y) != math.Float32bits(x) {
					t.Fatalf("K=%d [%d]: rank %d has %v, rank 0 %v", k, j, i, y, x)
				}
			}
		}
		// A buffer outside the vectors takes the ring.
		bufs := make([][]float32, k)
		for i := range bufs {
			bufs[i] = []float32{float32(i), 1}
		}
		mustAll(t, onAll(rings, func(r *allreduce.Ring) error { return r.AllReduce(ctx, bufs[r.Rank()]) }))
		if want := float32(k * (k - 1) / 2); bufs[k-1][0] != want || bufs[k-1][1] != float32(k) {
			t.Fatalf("K=%d: ring all-reduce gave %v", k, bufs[k-1])
		}
		closeAll(rings)
	}
	if after := vecFiles(); len(after) > before {
		t.Errorf("vector files left in %s: %v", shmDir, after)
	}
}

// TestDirectNextGeneration: a vector keeps its values when the next ring
// publishes it anew, and a vector a ring still holds is not offered to a
// second one (that ring goes around the ring instead).
func TestDirectNextGeneration(t *testing.T) {
	needShm(t)
	ctx := context.Background()
	vs := sharedVectors(t, 2, 4096)
	for gen := uint64(1); gen <= 3; gen++ {
		for i, v := range vs {
			for j := range v.Floats() {
				v.Floats()[j] = float32(int(gen)*10 + i)
			}
		}
		rings := directRings(t, vs, allreduce.Config{JobID: "gens", Generation: gen})
		for i, v := range vs {
			if got, want := v.Floats()[4095], float32(int(gen)*10+i); got != want {
				t.Fatalf("generation %d rank %d: publishing changed the vector: %v, want %v", gen, i, got, want)
			}
		}
		mustAll(t, onAll(rings, func(r *allreduce.Ring) error { return r.AllReduce(ctx, vs[r.Rank()].Floats()) }))
		if got, want := vs[1].Floats()[7], float32(20*int(gen)+1); got != want {
			t.Fatalf("generation %d: sum %v, want %v", gen, got, want)
		}
		if gen == 2 {
			// While these rings hold the vectors, another ring of the same
			// vectors must not share them.
			other := directRings(t, vs, allreduce.Config{JobID: "other", Generation: gen})
			if other[0].InPlace() || other[1].InPlace() {
				t.Fatal("a vector held by an open ring was shared by a second one")
			}
			closeAll(other)
		}
		closeAll(rings)
	}
}

// TestDirectNotEveryRank: the ring sums in place only when every rank can:
// a rank without a vector, vectors of different lengths, or a bfloat16
// wire keep the ring's all-reduce, which still sums right.
func TestDirectNotEveryRank(t *testing.T) {
	needShm(t)
	ctx := context.Background()
	cases := []struct {
		name string
		lens []int // 0: no vector
		wire allreduce.Wire
	}{
		{"one rank without", []int{64, 0, 64}, allreduce.Float32},
		{"different lengths", []int{64, 65}, allreduce.Float32},
		{"bfloat16 wire", []int{64, 64}, allreduce.BFloat16},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vs := make([]*shm.SharedVector, len(tc.lens))
			for i, n := range tc.lens {
				if n > 0 {
					vs[i] = sharedVectors(t, 1, n)[0]
				}
			}
			rings := directRings(t, vs, allreduce.Config{JobID: "mixed", Wire: tc.wire})
			bufs := make([][]float32, len(vs))
			for i, r := range rings {
				if r.InPlace() {
					t.Fatalf("rank %d sums in place", i)
				}
				if vs[i] != nil {
					bufs[i] = vs[i].Floats()[:64]
				} else {
					bufs[i] = make([]float32, 64)
				}
				for j := range bufs[i] {
					bufs[i][j] = float32(i + 1)
				}
			}
			mustAll(t, onAll(rings, func(r *allreduce.Ring) error { return r.AllReduce(ctx, bufs[r.Rank()]) }))
			want := float32(len(vs) * (len(vs) + 1) / 2)
			for i := range bufs {
				if bufs[i][63] != want {
					t.Fatalf("rank %d: %v, want %v", i, bufs[i][63], want)
				}
			}
		})
	}
}

// TestDirectRangeMismatch: ranks that pass different ranges of their
// vectors get an error naming the mismatch, not a silent wrong sum.
func TestDirectRangeMismatch(t *testing.T) {
	needShm(t)
	vs := sharedVectors(t, 2, 1000)
	rings := directRings(t, vs, allreduce.Config{JobID: "mismatch", Timeout: 5 * time.Second})
	errs := onAll(rings, func(r *allreduce.Ring) error {
		if r.Rank() == 0 {
			return r.AllReduce(context.Background(), vs[0].Floats()[:10])
		}
		return r.AllReduce(context.Background(), vs[1].Floats()[:20])
	})
	for i, err := range errs {
		var pe *allreduce.PeerError
		if !errors.As(err, &pe) || !errors.Is(err, allreduce.ErrMismatch) {
			t.Errorf("rank %d: %v, want an allreduce.PeerError for the mismatch", i, err)
		}
	}
}

// TestDirectPeerClosed: when a rank closes its ring while the others wait
// in an in-place all-reduce, they fail at once with a typed error naming
// it, long before the deadline, and no goroutine is left.
func TestDirectPeerClosed(t *testing.T) {
	needShm(t)
	base := runtime.NumGoroutine()
	t.Run("close", func(t *testing.T) {
		const k = 3
		vs := sharedVectors(t, k, 1<<16)
		rings := directRings(t, vs, allreduce.Config{JobID: "closed", Timeout: 20 * time.Second})
		start := time.Now()
		errs := onAll(rings, func(r *allreduce.Ring) error {
			if r.Rank() == 2 {
				time.Sleep(50 * time.Millisecond)
				return r.Close()
			}
			return r.AllReduce(context.Background(), vs[r.Rank()].Floats())
		})
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("the waits ended after %v", d)
		}
		for i, err := range errs[:2] {
			var pe *allreduce.PeerError
			if !errors.As(err, &pe) {
				t.Errorf("rank %d: %v, want an allreduce.PeerError", i, err)
				continue
			}
			if pe.Op != "allreduce" {
				t.Errorf("rank %d: op %q", i, pe.Op)
			}
		}
		closeAll(rings)
	})
	checkGoroutines(t, base)
}

// TestDirectDeadline: a rank that never joins the all-reduce makes the
// others fail with allreduce.ErrDeadline at the ring's deadline.
func TestDirectDeadline(t *testing.T) {
	needShm(t)
	vs := sharedVectors(t, 2, 1024)
	rings := directRings(t, vs, allreduce.Config{JobID: "stall", Timeout: 300 * time.Millisecond})
	start := time.Now()
	err := rings[0].AllReduce(context.Background(), vs[0].Floats())
	if !errors.Is(err, allreduce.ErrDeadline) {
		t.Fatalf("got %v, want allreduce.ErrDeadline", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("failed after %v, want about 300ms", d)
	}
}

// BenchmarkDirectAllReduce compares, for 2 ranks on one host, the in-place
// all-reduce of a shared vector with the shared-memory ring's, at the size
// of the default model's gradient.
func BenchmarkDirectAllReduce(b *testing.B) {
	if _, err := os.Stat(shmDir); err != nil {
		b.Skipf("no %s: %v", shmDir, err)
	}
	const n = 2304 << 10 / 4
	for _, inPlace := range []bool{false, true} {
		name := "ring"
		if inPlace {
			name = "in-place"
		}
		b.Run(name, func(b *testing.B) {
			vs := make([]*shm.SharedVector, 2)
			for i := range vs {
				v, err := shm.NewSharedVector(n)
				if err != nil {
					b.Fatal(err)
				}
				defer v.Close()
				vs[i] = v
			}
			rings := netRingsWith(b, 2, allreduce.Config{JobID: "bench", Transport: allreduce.TransportSHM}, func(rank int, c *allreduce.Config) {
				if inPlace {
					c.Shared = vs[rank]
				}
			})
			defer closeAll(rings)
			b.SetBytes(4 * n)
			b.ResetTimer()
			for range b.N {
				mustAll(b, onAll(rings, func(r *allreduce.Ring) error { return r.AllReduce(context.Background(), vs[r.Rank()].Floats()) }))
			}
		})
	}
}

// TestShmLinksMixedByPermission: in a ring of 3 where rank 2 cannot open
// rank 1's segment (another user's file), the link 1→2 stays on TCP while
// 0→1 and 2→0 move to shared memory; the ring, with shared vectors or
// without, still runs every collective.
func TestShmLinksMixedByPermission(t *testing.T) {
	needShm(t)
	testRefuseShm = func(rank int) bool { return rank == 2 }
	defer func() { testRefuseShm = nil }()
	for _, withVec := range []bool{false, true} {
		vs := make([]*shm.SharedVector, 3)
		if withVec {
			vs = sharedVectors(t, 3, 1000)
		}
		rings := directRings(t, vs, allreduce.Config{JobID: "perm", Timeout: 5 * time.Second})
		for i, r := range rings {
			nt := r.Transport().(*pair)
			_, out := nt.out.(*shm.Out)
			_, in := nt.in.(*shm.In)
			want := [][2]bool{{true, true}, {false, true}, {true, false}}[i]
			if out != want[0] || in != want[1] || r.InPlace() {
				t.Fatalf("rank %d: shm out %v in %v in place %v, want %v %v false", i, out, in, r.InPlace(), want[0], want[1])
			}
		}
		for round := range 5 {
			bufs := make([][]float32, 3)
			for i := range bufs {
				bufs[i] = make([]float32, 1000)
				for j := range bufs[i] {
					bufs[i][j] = float32(i + round)
				}
			}
			mustAll(t, onAll(rings, func(r *allreduce.Ring) error { return r.AllReduce(context.Background(), bufs[r.Rank()]) }))
			if want := float32(3 + 3*round); bufs[2][999] != want {
				t.Fatalf("round %d: %v, want %v", round, bufs[2][999], want)
			}
			mustAll(t, onAll(rings, func(r *allreduce.Ring) error {
				var one [1]byte
				all := make([]byte, 3)
				return r.AllGather(context.Background(), one[:], all, []int{1, 1, 1})
			}))
		}
		closeAll(rings)
	}
}

// TestOnWaitRunsInWaits: a rank that waits for a late peer, on a
// shared-memory link, in an in-place all-reduce and in the TCP event loop,
// does the caller's OnWait work between its polls, the results stay exact,
// and the work does not hold up the rest of the process: with one
// processor and idle work that never runs out, the waiting goroutine still
// lets the collective's other goroutines (its sending half, the late peer)
// run at once instead of only when the runtime preempts it.
func TestOnWaitRunsInWaits(t *testing.T) {
	needShm(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ctx := context.Background()
	const n = 4096
	for _, transport := range []string{allreduce.TransportSHM, allreduce.TransportTCP} {
		t.Run(transport, func(t *testing.T) {
			var calls [2]atomic.Int64
			vs := sharedVectors(t, 2, n)
			rings := netRingsWith(t, 2, allreduce.Config{JobID: "idle", Transport: transport}, func(rank int, c *allreduce.Config) {
				if transport == allreduce.TransportSHM {
					c.Shared = vs[rank]
				}
				c.OnWait = func() bool { calls[rank].Add(1); return true }
			})
			defer closeAll(rings)
			if inPlace := rings[0].InPlace(); inPlace != (transport == allreduce.TransportSHM) {
				t.Fatalf("in place: %v", inPlace)
			}
			const rounds = 15
			var took []time.Duration
			for round := range rounds {
				for i, v := range vs {
					for j := range v.Floats() {
						v.Floats()[j] = float32(i + j%5)
					}
				}
				recv := make([][]byte, 2)
				t0 := time.Now()
				mustAll(t, onAll(rings, func(r *allreduce.Ring) error {
					if r.Rank() == 1 {
						time.Sleep(time.Millisecond) // rank 0 waits for this one
					}
					send := []byte{byte(r.Rank()), byte(round)}
					recv[r.Rank()] = make([]byte, 4)
					if err := r.AllGather(ctx, send, recv[r.Rank()], []int{2, 2}); err != nil {
						return err
					}
					return r.AllReduce(ctx, vs[r.Rank()].Floats())
				}))
				took = append(took, time.Since(t0))
				for i := range 2 {
					if got, want := recv[i], []byte{0, byte(round), 1, byte(round)}; string(got) != string(want) {
						t.Fatalf("round %d rank %d: gathered %v, want %v", round, i, got, want)
					}
					for j, x := range vs[i].Floats() {
						if want := float32(1 + 2*(j%5)); x != want {
							t.Fatalf("round %d rank %d [%d] = %v, want %v", round, i, j, x, want)
						}
					}
				}
			}
			if calls[0].Load() == 0 {
				t.Error("rank 0 waited for rank 1 without calling OnWait")
			}
			slices.Sort(took)
			// 1 ms of sleep per round; a waiter that never yields waits for
			// the runtime's preemption, 10 ms, several times a round
			// (median rounds of 57–68 ms when it was so). The bound leaves
			// room for a machine busy with other tests.
			if med := took[rounds/2]; med > 25*time.Millisecond {
				t.Errorf("median round %v with idle work (all %v): the waiting rank holds up the others", med, took)
			}
		})
	}
}

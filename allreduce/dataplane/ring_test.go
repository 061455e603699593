package dataplane

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/infonce/infonce/allreduce"
)

// transports under test: in-memory, the two network data planes, and TCP
// moved to shared memory.
var transportKinds = []string{"mem", allreduce.TransportGRPC, allreduce.TransportTCP, allreduce.TransportSHM}

func makeRings(t testing.TB, kind string, k int, cfg allreduce.Config) []*allreduce.Ring {
	t.Helper()
	if kind == "mem" {
		rings, err := allreduce.NewMemRings(k, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeAll(rings) })
		return rings
	}
	cfg.Transport = kind
	return netRings(t, k, cfg)
}

// sizesFor returns the buffer lengths every collective is tested with:
// empty, one element, fewer than k, not divisible by k, several chunks.
func sizesFor(k int) []int {
	return []int{0, 1, k - 1, 7*k + 3, 40_000 + k}
}

func TestAllReduceEqualsNaiveSum(t *testing.T) {
	base := runtime.NumGoroutine()
	ctx := context.Background()
	for _, kind := range transportKinds {
		for k := 1; k <= 8; k++ {
			if kind != "mem" && k > 4 && testing.Short() {
				continue
			}
			t.Run(fmt.Sprintf("%s/K=%d", kind, k), func(t *testing.T) {
				rings := makeRings(t, kind, k, allreduce.Config{JobID: "t", ChunkBytes: 4096})
				for _, n := range sizesFor(k) {
					rng := newRand(uint64(1000*k + n))
					in := make([][]float64, k)
					want := make([]float64, n)
					for r := range in {
						in[r] = make([]float64, n)
						for i := range in[r] {
							in[r][i] = float64(rng.IntN(2001) - 1000) // exact in float32 sums
							want[i] += in[r][i]
						}
					}
					bufs32 := make([][]float32, k)
					bufs64 := make([][]float64, k)
					for r := range k {
						bufs32[r] = make([]float32, n)
						bufs64[r] = append([]float64(nil), in[r]...)
						for i, v := range in[r] {
							bufs32[r][i] = float32(v)
						}
					}
					mustAll(t, onAll(rings, func(r *allreduce.Ring) error { return r.AllReduce(ctx, bufs32[r.Rank()]) }))
					mustAll(t, onAll(rings, func(r *allreduce.Ring) error { return r.AllReduce64(ctx, bufs64[r.Rank()]) }))
					for r := range k {
						for i := range n {
							if float64(bufs32[r][i]) != want[i] || bufs64[r][i] != want[i] {
								t.Fatalf("n=%d rank %d elem %d: got %v / %v, want %v", n, r, i, bufs32[r][i], bufs64[r][i], want[i])
							}
						}
					}
				}
			})
		}
	}
	checkGoroutines(t, base)
}

func TestAllGatherUneven(t *testing.T) {
	ctx := context.Background()
	for _, kind := range transportKinds {
		for _, k := range []int{1, 2, 3, 5, 8} {
			t.Run(fmt.Sprintf("%s/K=%d", kind, k), func(t *testing.T) {
				rings := makeRings(t, kind, k, allreduce.Config{JobID: "t", ChunkBytes: 256})
				for _, scale := range []int{0, 1, 37, 1000} {
					counts := make([]int, k)
					total := 0
					for r := range counts {
						counts[r] = (r*scale + scale/3) % (2*scale + 1) // uneven, some zero
						total += counts[r]
					}
					want := make([]byte, 0, total)
					sends := make([][]byte, k)
					for r := range k {
						sends[r] = make([]byte, counts[r])
						for i := range sends[r] {
							sends[r][i] = byte(r*31 + i*7)
						}
						want = append(want, sends[r]...)
					}
					recvs := make([][]byte, k)
					mustAll(t, onAll(rings, func(r *allreduce.Ring) error {
						recvs[r.Rank()] = make([]byte, total)
						return r.AllGather(ctx, sends[r.Rank()], recvs[r.Rank()], counts)
					}))
					for r := range k {
						if !bytes.Equal(recvs[r], want) {
							t.Fatalf("counts %v rank %d: gathered bytes differ", counts, r)
						}
					}
				}
			})
		}
	}
}

func TestReduceScatterUneven(t *testing.T) {
	ctx := context.Background()
	for _, kind := range transportKinds {
		for _, k := range []int{1, 2, 3, 4, 7} {
			t.Run(fmt.Sprintf("%s/K=%d", kind, k), func(t *testing.T) {
				rings := makeRings(t, kind, k, allreduce.Config{JobID: "t", ChunkBytes: 512})
				counts := make([]int, k)
				total := 0
				for r := range counts {
					counts[r] = []int{0, 1, 300, 17, 1000, 2, 5}[r%7]
					total += counts[r]
				}
				bufs := make([][]float32, k)
				want := make([]float32, total)
				for r := range k {
					bufs[r] = make([]float32, total)
					for i := range bufs[r] {
						bufs[r][i] = float32((r+1)*(i%13) - 20)
						want[i] += bufs[r][i]
					}
				}
				mustAll(t, onAll(rings, func(r *allreduce.Ring) error { return r.ReduceScatter(ctx, bufs[r.Rank()], counts) }))
				off := 0
				for r := range k {
					for i := off; i < off+counts[r]; i++ {
						if bufs[r][i] != want[i] {
							t.Fatalf("rank %d elem %d: got %v want %v", r, i, bufs[r][i], want[i])
						}
					}
					off += counts[r]
				}
			})
		}
	}
}

func TestBroadcastFromEveryRoot(t *testing.T) {
	ctx := context.Background()
	for _, kind := range transportKinds {
		for _, k := range []int{1, 2, 3, 5} {
			t.Run(fmt.Sprintf("%s/K=%d", kind, k), func(t *testing.T) {
				rings := makeRings(t, kind, k, allreduce.Config{JobID: "t", ChunkBytes: 1024})
				for root := range k {
					for _, n := range []int{0, 1, 5000} {
						bufs := make([][]byte, k)
						for r := range k {
							bufs[r] = bytes.Repeat([]byte{byte(r + 1)}, n)
						}
						mustAll(t, onAll(rings, func(r *allreduce.Ring) error { return r.Broadcast(ctx, bufs[r.Rank()], root) }))
						for r := range k {
							if !bytes.Equal(bufs[r], bufs[root]) || (n > 0 && bufs[r][0] != byte(root+1)) {
								t.Fatalf("root %d n %d: rank %d differs", root, n, r)
							}
						}
					}
				}
			})
		}
	}
}

func TestBarrierWaitsForEveryRank(t *testing.T) {
	for _, kind := range transportKinds {
		t.Run(kind, func(t *testing.T) {
			const k = 4
			rings := makeRings(t, kind, k, allreduce.Config{JobID: "t"})
			ctx := context.Background()
			late := 3
			start := time.Now()
			var lateEnter time.Time
			exits := make([]time.Time, k)
			mustAll(t, onAll(rings, func(r *allreduce.Ring) error {
				if r.Rank() == late {
					time.Sleep(50 * time.Millisecond)
					lateEnter = time.Now()
				}
				err := r.Barrier(ctx)
				exits[r.Rank()] = time.Now()
				return err
			}))
			for r, e := range exits {
				if e.Before(lateEnter) {
					t.Fatalf("rank %d left the barrier %v after start, before rank %d entered at %v", r, e.Sub(start), late, lateEnter.Sub(start))
				}
			}
		})
	}
}

func TestBFloat16WithinBound(t *testing.T) {
	ctx := context.Background()
	for _, kind := range []string{"mem", allreduce.TransportTCP, allreduce.TransportSHM} {
		for _, k := range []int{2, 3, 8} {
			t.Run(fmt.Sprintf("%s/K=%d", kind, k), func(t *testing.T) {
				rings := makeRings(t, kind, k, allreduce.Config{JobID: "t", Wire: allreduce.BFloat16, ChunkBytes: 2048})
				const n = 5003
				rng := newRand(uint64(k))
				bufs := make([][]float32, k)
				exact := make([]float64, n)
				abs := make([]float64, n)
				for r := range k {
					bufs[r] = make([]float32, n)
					fill32(rng, bufs[r])
					for i, v := range bufs[r] {
						v *= float32(math.Pow(10, float64(i%7-3)))
						bufs[r][i] = v
						exact[i] += float64(v)
						abs[i] += math.Abs(float64(v))
					}
				}
				mustAll(t, onAll(rings, func(r *allreduce.Ring) error { return r.AllReduce(ctx, bufs[r.Rank()]) }))
				worst := 0.0
				for i := range n {
					bound := allreduce.BFloat16Bound(k, abs[i])
					for r := range k {
						if bufs[r][i] != bufs[0][i] {
							t.Fatalf("elem %d: rank %d has %v, rank 0 has %v (ranks must agree)", i, r, bufs[r][i], bufs[0][i])
						}
					}
					err := math.Abs(float64(bufs[0][i]) - exact[i])
					if err > bound {
						t.Fatalf("elem %d: error %g exceeds bound %g", i, err, bound)
					}
					if abs[i] > 0 {
						worst = max(worst, err/abs[i])
					}
				}
				// the bound must not be vacuous: some element must have lost precision
				if worst == 0 {
					t.Fatalf("bfloat16 wire gave exact sums: the wire format is not in effect")
				}
				t.Logf("worst |err|/sum|x| = %.3g, bound factor %.3g", worst, allreduce.BFloat16Bound(k, 1))
			})
		}
	}
}

func TestCompressionRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, comp := range []string{"s2", "zstd"} {
		for _, wire := range []allreduce.Wire{allreduce.Float32, allreduce.BFloat16} {
			t.Run(comp+"/"+wire.String(), func(t *testing.T) {
				const k, n = 3, 30011
				rings := makeRings(t, "mem", k, allreduce.Config{JobID: "t", Compression: comp, Wire: wire, ChunkBytes: 8192})
				bufs := make([][]float32, k)
				want := make([]float32, n)
				for r := range k {
					bufs[r] = make([]float32, n)
					for i := r; i < n; i += 97 { // sparse
						bufs[r][i] = float32(i % 5)
						want[i] += bufs[r][i]
					}
				}
				// a dense stretch that does not compress
				rng := newRand(7)
				for i := 20000; i < 22000; i++ {
					for r := range k {
						v := float32(rng.IntN(64))
						bufs[r][i] += v
						want[i] += v
					}
				}
				mustAll(t, onAll(rings, func(r *allreduce.Ring) error { return r.AllReduce(ctx, bufs[r.Rank()]) }))
				for r := range k {
					for i := range n {
						if bufs[r][i] != want[i] {
							t.Fatalf("rank %d elem %d: got %v want %v", r, i, bufs[r][i], want[i])
						}
					}
				}
				send := bytes.Repeat([]byte("abc"), 1000)
				recv := make([]byte, 3*len(send))
				mustAll(t, onAll(rings, func(r *allreduce.Ring) error {
					b := make([]byte, len(recv))
					if err := r.AllGather(ctx, send, b, []int{len(send), len(send), len(send)}); err != nil {
						return err
					}
					if !bytes.Equal(b, bytes.Repeat(send, 3)) {
						return fmt.Errorf("compressed allgather differs")
					}
					return nil
				}))
			})
		}
	}
}

// TestDataPlaneNamesTheTransport: a ring reports how its data moved, and
// allreduce.ChooseTransport is the workers' choice.
func TestDataPlaneNamesTheTransport(t *testing.T) {
	for _, kind := range transportKinds {
		t.Run(kind, func(t *testing.T) {
			rings := makeRings(t, kind, 2, allreduce.Config{JobID: "dataplane"})
			want := kind
			if kind == allreduce.TransportSHM && runtime.GOOS != "linux" {
				want = allreduce.TransportTCP // the links stay on TCP
			}
			for _, r := range rings {
				if got := r.DataPlane(); got != want {
					t.Errorf("rank %d over %s: DataPlane() = %q, want %q", r.Rank(), kind, got, want)
				}
			}
		})
	}
	one, err := allreduce.NewMemRings(1, allreduce.Config{JobID: "dataplane"})
	if err != nil {
		t.Fatal(err)
	}
	defer one[0].Close()
	if got := one[0].DataPlane(); got != "local" {
		t.Errorf("ring of one: DataPlane() = %q, want local", got)
	}
	for _, tc := range []struct {
		tls, shm bool
		want     string
	}{
		{false, true, allreduce.TransportSHM},
		{false, false, allreduce.TransportTCP},
		{true, true, allreduce.TransportGRPC},
		{true, false, allreduce.TransportGRPC},
	} {
		if got := allreduce.ChooseTransport(tc.tls, tc.shm); got != tc.want {
			t.Errorf("ChooseTransport(tls %v, shared memory %v) = %q, want %q", tc.tls, tc.shm, got, tc.want)
		}
	}
}

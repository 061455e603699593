package worker

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/dataplane"
	"github.com/infonce/infonce/allreduce/shm"
	"github.com/infonce/infonce/gemm"
)

// ring64 is a float64 Comm over an allreduce ring: the exact test path.
type ring64 struct{ *allreduce.Ring }

func (r ring64) AllReduce(ctx context.Context, buf []float64) error { return r.AllReduce64(ctx, buf) }

// stepOnRanks runs one global step on K in-memory ranks and returns every
// rank's trainer after it.
func stepOnRanks[T gemm.Float](t *testing.T, cfg Config, K int, steps int64, comm func(*allreduce.Ring) Comm[T]) ([]*Trainer[T], []float64) {
	t.Helper()
	return stepOnRanksWith(t, cfg, K, steps, allreduce.Config{JobID: "equivalence"}, comm)
}

// stepOnRanksWith is stepOnRanks over rings of configuration rc.
func stepOnRanksWith[T gemm.Float](t *testing.T, cfg Config, K int, steps int64, rc allreduce.Config, comm func(*allreduce.Ring) Comm[T]) ([]*Trainer[T], []float64) {
	t.Helper()
	set := smallMNIST(t, 512, 10)
	return stepOnRanksData(t, cfg, &Data{Name: set.Name, Set: set}, K, steps, rc, comm)
}

// stepOnRanksData is stepOnRanksWith over the given data.
func stepOnRanksData[T gemm.Float](t *testing.T, cfg Config, data *Data, K int, steps int64, rc allreduce.Config, comm func(*allreduce.Ring) Comm[T]) ([]*Trainer[T], []float64) {
	t.Helper()
	rings, err := allreduce.NewMemRings(K, rc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, r := range rings {
			r.Close()
		}
	}()
	trainers := make([]*Trainer[T], K)
	losses := make([][]float64, K)
	errs := make([]error, K)
	var wg sync.WaitGroup
	for k := range K {
		tr, err := NewTrainerData[T](cfg, data, nil)
		if err != nil {
			t.Fatal(err)
		}
		trainers[k] = tr
		wg.Add(1)
		go func() {
			defer wg.Done()
			losses[k], errs[k] = runSteps(context.Background(), tr, comm(rings[k]), k, steps)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tr := range trainers {
		tr.Close()
	}
	return trainers, losses[0]
}

// runSteps runs steps [0, steps) of rank k and returns their losses.
func runSteps[T gemm.Float](ctx context.Context, tr *Trainer[T], comm Comm[T], k int, steps int64) ([]float64, error) {
	var losses []float64
	for s := range steps {
		st, err := tr.Step(ctx, comm, s)
		if err != nil {
			return losses, fmt.Errorf("rank %d step %d: %w", k, s, err)
		}
		losses = append(losses, st.Loss)
	}
	return losses, nil
}

// relDiff is max_i |a_i − b_i| / max(max_i |b_i|, tiny): the error relative
// to the size of the vector.
func relDiff[T gemm.Float](a, b []T) float64 {
	var d, s float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
		s = math.Max(s, math.Abs(float64(b[i])))
	}
	return d / math.Max(s, 1e-300)
}

// TestDistributedEqualsSingleProcess is DESIGN's invariant: K ranks with
// B/K samples each (uneven splits included) produce the loss and the
// gradient of every parameter, logit scale included, of one process with
// the whole global batch: 1e-10 relative in float64, 1e-5 in float32.
func TestDistributedEqualsSingleProcess(t *testing.T) {
	for _, objective := range []string{CLIP, SimCLR, MoCo, SigLIP} {
		for _, symmetric := range []bool{false, true} {
			if symmetric && objective != MoCo {
				continue
			}
			cfg := smallConfig(t, objective)
			cfg.Batch, cfg.Chunk, cfg.MoCoQueue, cfg.MoCoSymmetric = 10, 3, 20, symmetric
			cfg.LearnTemperature = true // the logit scale's gradient is compared too
			cfg.MaskFalseNegatives = objective == CLIP
			name := objective
			if symmetric {
				name += "-symmetric"
			}
			t.Run(name+"/float64", func(t *testing.T) {
				one, wantLoss := stepOnRanks(t, cfg, 1, 2, func(*allreduce.Ring) Comm[float64] { return Single[float64]{} })
				for K := 1; K <= 4; K++ {
					got, gotLoss := stepOnRanks(t, cfg, K, 2, func(r *allreduce.Ring) Comm[float64] { return ring64{r} })
					for s := range wantLoss {
						if d := math.Abs(gotLoss[s]-wantLoss[s]) / math.Abs(wantLoss[s]); d > 1e-10 {
							t.Errorf("K=%d step %d: loss %v, single process %v (rel %.2g)", K, s, gotLoss[s], wantLoss[s], d)
						}
					}
					for k, tr := range got {
						if d := relDiff(tr.Model.P.G, one[0].Model.P.G); d > 1e-10 {
							t.Errorf("K=%d rank %d: gradient differs from the single process by %.2g relative", K, k, d)
						}
						ls := tr.Model.LogitScale
						if g, w := tr.Model.P.G[ls], one[0].Model.P.G[ls]; math.Abs(g-w) > 1e-10*math.Max(math.Abs(w), 1e-12) {
							t.Errorf("K=%d rank %d: dL/dt %v, single process %v", K, k, g, w)
						}
						if d := relDiff(tr.Model.P.W, one[0].Model.P.W); d > 1e-10 {
							t.Errorf("K=%d rank %d: parameters after 2 steps differ by %.2g relative", K, k, d)
						}
					}
				}
			})
			t.Run(name+"/float32", func(t *testing.T) {
				one, wantLoss := stepOnRanks(t, cfg, 1, 1, func(*allreduce.Ring) Comm[float32] { return Single[float32]{} })
				got, gotLoss := stepOnRanks(t, cfg, 3, 1, func(r *allreduce.Ring) Comm[float32] { return r })
				if d := math.Abs(gotLoss[0]-wantLoss[0]) / math.Abs(wantLoss[0]); d > 1e-5 {
					t.Errorf("loss %v, single process %v", gotLoss[0], wantLoss[0])
				}
				for k, tr := range got {
					if d := relDiff(tr.Model.P.G, one[0].Model.P.G); d > 1e-5 {
						t.Errorf("rank %d: gradient differs from the single process by %.2g relative", k, d)
					}
				}
			})
		}
	}
}

// TestDroppingRemoteGradientIsCaught shows the invariant test can fail: a
// rank that scales its gradient share (as a local-loss bug would) is found.
func TestDroppingRemoteGradientIsCaught(t *testing.T) {
	cfg := smallConfig(t, CLIP)
	cfg.Batch = 10
	one, _ := stepOnRanks(t, cfg, 1, 1, func(r *allreduce.Ring) Comm[float64] { return ring64{r} })
	bad := func(r *allreduce.Ring) Comm[float64] { return halfGrad{ring64{r}} }
	got, _ := stepOnRanks(t, cfg, 2, 1, bad)
	if d := relDiff(got[0].Model.P.G, one[0].Model.P.G); d < 1e-3 {
		t.Fatalf("a wrong gradient passed the comparison (rel diff %.2g)", d)
	}
}

// halfGrad halves rank 1's gradient share before the reduction.
type halfGrad struct{ ring64 }

func (h halfGrad) AllReduce(ctx context.Context, buf []float64) error {
	if h.Rank() == 1 && len(buf) > 2 {
		for i := range buf {
			buf[i] /= 2
		}
	}
	return h.ring64.AllReduce(ctx, buf)
}

// TestOverlappedReductionEqualsSingleProcess runs the float32 ranks over
// rings with small buckets, so that the gradient is reduced in many
// buckets during the backward pass: the loss and the gradient still equal
// the single process's (1e-5), and the steps did overlap.
func TestOverlappedReductionEqualsSingleProcess(t *testing.T) {
	for _, objective := range []string{CLIP, SimCLR, MoCo, SigLIP} {
		t.Run(objective, func(t *testing.T) {
			cfg := smallConfig(t, objective)
			cfg.Batch, cfg.Chunk, cfg.MoCoQueue = 10, 3, 20
			cfg.LearnTemperature = true
			cfg.LayerNorm = true
			one, wantLoss := stepOnRanks(t, cfg, 1, 2, func(*allreduce.Ring) Comm[float32] { return Single[float32]{} })
			for _, K := range []int{2, 3} {
				got, gotLoss := stepOnRanksWith(t, cfg, K, 2, allreduce.Config{JobID: "overlap", BucketBytes: 1 << 10},
					func(r *allreduce.Ring) Comm[float32] { return r })
				for s := range wantLoss {
					if d := math.Abs(gotLoss[s]-wantLoss[s]) / math.Abs(wantLoss[s]); d > 1e-5 {
						t.Errorf("K=%d step %d: loss %v, single process %v", K, s, gotLoss[s], wantLoss[s])
					}
				}
				for k, tr := range got {
					if tr.overlappedSteps != 2 {
						t.Errorf("K=%d rank %d: %d of 2 steps overlapped the reduction with the backward pass", K, k, tr.overlappedSteps)
					}
					if d := relDiff(tr.Model.P.G, one[0].Model.P.G); d > 1e-5 {
						t.Errorf("K=%d rank %d: gradient differs from the single process by %.2g relative", K, k, d)
					}
					if d := relDiff(tr.Model.P.W, one[0].Model.P.W); d > 1e-5 {
						t.Errorf("K=%d rank %d: parameters after 2 steps differ by %.2g relative", K, k, d)
					}
				}
			}
		})
	}
}

// TestInPlaceReductionEqualsSingleProcess runs float32 ranks whose
// gradients live in shared vectors over shared-memory rings, so that the
// all-reduces of the gradient (whole, or in buckets during the backward
// pass) run in place: the loss, the gradient and the parameters equal the
// single process's (1e-5), and every rank holds the same bits.
func TestInPlaceReductionEqualsSingleProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("shared-memory rings are built on Linux only")
	}
	if _, err := os.Stat("/dev/shm"); err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	for _, objective := range []string{CLIP, SimCLR, MoCo} {
		t.Run(objective, func(t *testing.T) {
			cfg := smallConfig(t, objective)
			cfg.Batch, cfg.Chunk, cfg.MoCoQueue = 10, 3, 20
			cfg.LearnTemperature = true
			one, wantLoss := stepOnRanks(t, cfg, 1, 2, func(*allreduce.Ring) Comm[float32] { return Single[float32]{} })
			for _, K := range []int{2, 3} {
				for _, bucket := range []int{0, 1} { // KiB; 0: one piece after the backward pass
					got, gotLoss := stepInPlace(t, cfg, K, 2, bucket)
					for s := range wantLoss {
						if d := math.Abs(gotLoss[s]-wantLoss[s]) / math.Abs(wantLoss[s]); d > 1e-5 {
							t.Errorf("K=%d bucket %d step %d: loss %v, single process %v", K, bucket, s, gotLoss[s], wantLoss[s])
						}
					}
					for k, tr := range got {
						if d := relDiff(tr.Model.P.G, one[0].Model.P.G); d > 1e-5 {
							t.Errorf("K=%d bucket %d rank %d: gradient differs from the single process by %.2g relative", K, bucket, k, d)
						}
						if d := relDiff(tr.Model.P.W, one[0].Model.P.W); d > 1e-5 {
							t.Errorf("K=%d bucket %d rank %d: parameters after 2 steps differ by %.2g relative", K, bucket, k, d)
						}
						if !slices.Equal(tr.Model.P.W, got[0].Model.P.W) {
							t.Errorf("K=%d bucket %d: rank %d's parameters differ from rank 0's", K, bucket, k)
						}
					}
				}
			}
		})
	}
}

// stepInPlace runs steps on K trainers whose gradients are shared vectors,
// over a shared-memory ring on loopback with gradient buckets of
// bucketKiB, and fails unless the ring all-reduces in place.
func stepInPlace(t *testing.T, cfg Config, K int, steps int64, bucketKiB int) ([]*Trainer[float32], []float64) {
	t.Helper()
	cfg.BucketKiB = bucketKiB
	set := smallMNIST(t, 512, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srvs := make([]*dataplane.Server, K)
	peers := make([]string, K)
	for k := range K {
		s, err := dataplane.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		srvs[k], peers[k] = s, s.Addr()
	}
	vecs := make([]*shm.SharedVector, K)
	trainers := make([]*Trainer[float32], K)
	for k := range K {
		tr, err := NewTrainerGrad[float32](cfg, set, func(n int) ([]float32, error) {
			v, err := shm.NewSharedVector(n)
			if err != nil {
				return nil, err
			}
			vecs[k] = v
			return v.Floats(), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		trainers[k] = tr
	}
	t.Cleanup(func() {
		for _, v := range vecs {
			v.Close()
		}
	})
	rings := make([]*allreduce.Ring, K)
	losses := make([][]float64, K)
	errs := make([]error, K)
	var wg sync.WaitGroup
	for k := range K {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := dataplane.NewRing(ctx, srvs[k], allreduce.Config{JobID: "in-place", Rank: k, Peers: peers,
				Transport: allreduce.TransportSHM, Shared: vecs[k]})
			if err != nil {
				errs[k] = err
				return
			}
			rings[k] = r
			if !r.InPlace() {
				errs[k] = fmt.Errorf("rank %d: the ring does not all-reduce in place", k)
				return
			}
			losses[k], errs[k] = runSteps(ctx, trainers[k], r, k, steps)
		}()
	}
	wg.Wait()
	for _, r := range rings {
		if r != nil {
			r.Close()
		}
	}
	for _, tr := range trainers {
		tr.Close()
	}
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	want := int64(0)
	if bucketKiB > 0 {
		want = steps
	}
	for k, tr := range trainers {
		if tr.overlappedSteps != want {
			t.Fatalf("bucket %d KiB rank %d: %d steps overlapped, want %d", bucketKiB, k, tr.overlappedSteps, want)
		}
	}
	return trainers, losses[0]
}

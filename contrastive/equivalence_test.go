package contrastive

import (
	"context"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/infonce/infonce/gemm"
)

// The invariant of the distributed form: K ranks with uneven shares of the
// global batch produce, summed over ranks (loss, dL/dt) and concatenated
// (gradients), what one rank produces on the whole batch.

var splits = [][]int{{10}, {3, 7}, {4, 0, 6}, {2, 3, 1, 4}}

// tolerance of the equivalence in T's precision.
func tolerance[T gemm.Float]() float64 {
	var x T
	if _, ok := any(x).(float32); ok {
		return 1e-5
	}
	return 1e-10
}

// outcome is what the equivalence compares: Σ Loss, Σ DT and the local
// gradients concatenated in rank order.
type outcome struct {
	loss, dt float64
	grads    [][]float64
}

func compare(t *testing.T, got, want outcome, tol float64) {
	t.Helper()
	if e := relErr1(got.loss, want.loss); logRel(t, "Σ loss", e) > tol {
		t.Errorf("Σ loss %v, single rank %v (rel %g)", got.loss, want.loss, e)
	}
	if e := relErr1(got.dt, want.dt); logRel(t, "Σ dL/dt", e) > tol {
		t.Errorf("Σ dL/dt %v, single rank %v (rel %g)", got.dt, want.dt, e)
	}
	for g := range want.grads {
		if e := relErr(got.grads[g], want.grads[g]); logRel(t, "gradient", e) > tol {
			t.Errorf("gradient %d: rel error %g", g, e)
		}
	}
}

// distributed runs one step of an objective on len(counts) in-memory ranks;
// step computes rank r's result and returns its local gradients.
func distributed(t *testing.T, counts []int, ngrad, d int, step func(r int, coll Collective, lo, hi int) (float64, float64, [][]float64, error)) outcome {
	t.Helper()
	before := runtime.NumGoroutine()
	off := offsets(counts)
	B := off[len(counts)]
	out := outcome{grads: make([][]float64, ngrad)}
	for g := range out.grads {
		out.grads[g] = make([]float64, B*d)
	}
	losses, dts := make([]float64, len(counts)), make([]float64, len(counts))
	err := runRanks(len(counts), func(r int, coll Collective) error {
		loss, dt, grads, err := step(r, coll, off[r], off[r+1])
		if err != nil {
			return err
		}
		losses[r], dts[r] = loss, dt
		for g := range grads {
			copy(out.grads[g][off[r]*d:], grads[g])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for r := range counts { // summed in rank order, as an all-reduce would
		out.loss += losses[r]
		out.dt += dts[r]
	}
	checkNoLeak(t, before)
	return out
}

// checkNoLeak fails if goroutines started by the test are still running.
func checkNoLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines leaked", runtime.NumGoroutine()-before)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestEquivalenceCLIP(t *testing.T) {
	t.Run("float64", testEquivalenceCLIP[float64])
	t.Run("float32", testEquivalenceCLIP[float32])
}

func testEquivalenceCLIP[T gemm.Float](t *testing.T) {
	const B, d = 10, 6
	rng := rand.New(rand.NewPCG(21, 0))
	u, v := conv[T](unitRows(rng, B, d)), conv[T](unitRows(rng, B, d))
	ids := []int32{3, 1, 3, 2, 7, 1, 4, 5, 6, 3}
	scale := T(1 / 0.07)
	for _, mask := range []bool{false, true} {
		var want outcome
		for _, counts := range splits {
			got := distributed(t, counts, 2, d, func(r int, coll Collective, lo, hi int) (float64, float64, [][]float64, error) {
				c := CLIP[T]{Chunk: 3, MaskFalseNegatives: mask}
				in := CLIPInput[T]{U: rows(u, lo, hi, d), V: rows(v, lo, hi, d), D: d, Counts: counts, Scale: scale,
					DU: make([]T, (hi-lo)*d), DV: make([]T, (hi-lo)*d)}
				if mask {
					in.IDs = ids[lo:hi]
				}
				res, err := c.Compute(context.Background(), coll, in)
				return float64(res.Loss), float64(res.DT), [][]float64{to64(in.DU), to64(in.DV)}, err
			})
			if len(counts) == 1 {
				want = got
				continue
			}
			t.Run("", func(t *testing.T) {
				t.Logf("mask %v counts %v", mask, counts)
				compare(t, got, want, tolerance[T]())
			})
		}
	}
}

func TestEquivalenceNTXent(t *testing.T) {
	t.Run("float64", testEquivalenceNTXent[float64])
	t.Run("float32", testEquivalenceNTXent[float32])
}

func testEquivalenceNTXent[T gemm.Float](t *testing.T) {
	const B, d = 10, 6
	rng := rand.New(rand.NewPCG(22, 0))
	z1, z2 := conv[T](unitRows(rng, B, d)), conv[T](unitRows(rng, B, d))
	var want outcome
	for _, counts := range splits {
		got := distributed(t, counts, 2, d, func(r int, coll Collective, lo, hi int) (float64, float64, [][]float64, error) {
			n := NTXent[T]{Chunk: 3}
			in := NTXentInput[T]{Z1: rows(z1, lo, hi, d), Z2: rows(z2, lo, hi, d), D: d, Counts: counts, Scale: 1 / 0.5,
				DZ1: make([]T, (hi-lo)*d), DZ2: make([]T, (hi-lo)*d)}
			res, err := n.Compute(context.Background(), coll, in)
			return float64(res.Loss), float64(res.DT), [][]float64{to64(in.DZ1), to64(in.DZ2)}, err
		})
		if len(counts) == 1 {
			want = got
			continue
		}
		t.Logf("counts %v", counts)
		compare(t, got, want, tolerance[T]())
	}
}

func TestEquivalenceMoCo(t *testing.T) {
	t.Run("float64", testEquivalenceMoCo[float64])
	t.Run("float32", testEquivalenceMoCo[float32])
}

func testEquivalenceMoCo[T gemm.Float](t *testing.T) {
	const B, d, K = 10, 6, 20
	rng := rand.New(rand.NewPCG(23, 0))
	q1, k2 := conv[T](unitRows(rng, B, d)), conv[T](unitRows(rng, B, d))
	q2, k1 := conv[T](unitRows(rng, B, d)), conv[T](unitRows(rng, B, d))
	for _, sym := range []bool{false, true} {
		var want outcome
		var wantQueue []T
		for _, counts := range splits {
			queues := make([]*Queue[T], len(counts))
			got := distributed(t, counts, 2, d, func(r int, coll Collective, lo, hi int) (float64, float64, [][]float64, error) {
				m := MoCo[T]{Queue: NewQueue[T](K, d, 99), Symmetric: sym, Chunk: 3}
				queues[r] = m.Queue
				in := MoCoInput[T]{Q1: rows(q1, lo, hi, d), K2: rows(k2, lo, hi, d), D: d, Counts: counts, Scale: 1 / 0.2,
					DQ1: make([]T, (hi-lo)*d)}
				dq2 := make([]T, (hi-lo)*d)
				if sym {
					in.Q2, in.K1, in.DQ2 = rows(q2, lo, hi, d), rows(k1, lo, hi, d), dq2
				}
				res, err := m.Compute(context.Background(), coll, in)
				if err != nil {
					return 0, 0, nil, err
				}
				if err := m.Enqueue(context.Background(), coll, rows(k2, lo, hi, d), d, counts); err != nil {
					return 0, 0, nil, err
				}
				return float64(res.Loss), float64(res.DT), [][]float64{to64(in.DQ1), to64(dq2)}, nil
			})
			for r, q := range queues {
				if q.Ptr() != B%K || !equalSlices(q.Data(), queues[0].Data()) {
					t.Errorf("counts %v: rank %d's queue differs from rank 0's after Enqueue", counts, r)
				}
			}
			if len(counts) == 1 {
				want, wantQueue = got, queues[0].Data()
				continue
			}
			t.Logf("symmetric %v counts %v", sym, counts)
			compare(t, got, want, tolerance[T]())
			if !equalSlices(queues[0].Data(), wantQueue) {
				t.Errorf("counts %v: queue differs from the single-rank queue", counts)
			}
		}
	}
}

func equalSlices[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

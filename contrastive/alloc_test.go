package contrastive

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/infonce/infonce/gemm"
)

// After the first call with a given shape every objective reuses its work
// buffers: a steady-state Compute allocates nothing. The shapes stay below
// the size at which gonum's kernel spreads a product over goroutines
// (which costs that kernel a few allocations of its own). The float32 case
// runs on gonum's kernel and on the default kernel; the latter keeps its
// packing scratch in a sync.Pool, which the race detector purges at random,
// so it is checked only without -race.
func TestNoAllocationInSteadyState(t *testing.T) {
	t.Run("float64", testNoAlloc[float64])
	t.Run("float32 gonum kernel", func(t *testing.T) {
		defer gemm.Use(gemm.Use(gemm.Gonum{}))
		testNoAlloc[float32](t)
	})
	t.Run("float32 default kernel", func(t *testing.T) {
		if raceEnabled {
			t.Skip("the race detector purges the kernel's pooled scratch; run without -race")
		}
		testNoAlloc[float32](t)
	})
}

func testNoAlloc[T gemm.Float](t *testing.T) {
	const B, d, chunk = 48, 16, 20
	rng := rand.New(rand.NewPCG(41, 0))
	u, v := conv[T](unitRows(rng, B, d)), conv[T](unitRows(rng, B, d))
	du, dv := make([]T, B*d), make([]T, B*d)
	ids := make([]int32, B)
	for i := range ids {
		ids[i] = int32(i % 40)
	}
	ctx := context.Background()
	counts := []int{B}
	check := func(name string, f func() error) {
		t.Helper()
		if err := f(); err != nil { // first call sizes the buffers
			t.Fatal(err)
		}
		var err error
		allocs := testing.AllocsPerRun(5, func() {
			if e := f(); e != nil {
				err = e
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if allocs != 0 {
			t.Errorf("%s: %v allocations per steady-state call", name, allocs)
		}
	}
	for _, mask := range []bool{false, true} {
		c := CLIP[T]{Chunk: chunk, MaskFalseNegatives: mask}
		in := CLIPInput[T]{U: u, V: v, D: d, Counts: counts, Scale: 10, IDs: ids, DU: du, DV: dv}
		check("CLIP", func() error { _, err := c.Compute(ctx, Single{}, in); return err })
	}
	n := NTXent[T]{Chunk: chunk}
	nin := NTXentInput[T]{Z1: u, Z2: v, D: d, Counts: counts, Scale: 10, DZ1: du, DZ2: dv}
	check("NTXent", func() error { _, err := n.Compute(ctx, Single{}, nin); return err })
	for _, sym := range []bool{false, true} {
		m := MoCo[T]{Queue: NewQueue[T](96, d, 1), Symmetric: sym, Chunk: chunk}
		mi := MoCoInput[T]{Q1: u, K2: v, Q2: v, K1: u, D: d, Counts: counts, Scale: 10, DQ1: du, DQ2: dv}
		check("MoCo", func() error { _, err := m.Compute(ctx, Single{}, mi); return err })
		check("Enqueue", func() error { return m.Enqueue(ctx, Single{}, v, d, counts) })
	}
	// Hard and debiased negatives keep their terms in reused buffers too.
	g := Negatives{Beta: 1, TauPlus: 0.1}
	for _, mask := range []bool{false, true} {
		c := CLIP[T]{Chunk: chunk, MaskFalseNegatives: mask, Negatives: g}
		in := CLIPInput[T]{U: u, V: v, D: d, Counts: counts, Scale: 10, IDs: ids, DU: du, DV: dv}
		check("CLIP negatives", func() error { _, err := c.Compute(ctx, Single{}, in); return err })
	}
	ng := NTXent[T]{Chunk: chunk, Negatives: g}
	check("NTXent negatives", func() error { _, err := ng.Compute(ctx, Single{}, nin); return err })
	mg := MoCo[T]{Queue: NewQueue[T](96, d, 1), Symmetric: true, Chunk: chunk, Negatives: g}
	mgi := MoCoInput[T]{Q1: u, K2: v, Q2: v, K1: u, D: d, Counts: counts, Scale: 10, DQ1: du, DQ2: dv}
	check("MoCo negatives", func() error { _, err := mg.Compute(ctx, Single{}, mgi); return err })
}

package contrastive

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/infonce/infonce/internal/cputime"
)

// BenchmarkObjectives times one float32 Compute of every objective on one
// rank at the default training shape (global batch 512, d = 64, the
// default chunk; MoCo with a queue of 8 batches), and reports samples/s
// and the CPU time of the process per step.
func BenchmarkObjectives(b *testing.B) {
	const B, d = 512, 64
	rng := rand.New(rand.NewPCG(61, 0))
	u, v := conv[float32](unitRows(rng, B, d)), conv[float32](unitRows(rng, B, d))
	du, dv := make([]float32, B*d), make([]float32, B*d)
	ids := make([]int32, B)
	for i := range ids {
		ids[i] = int32(rng.IntN(10))
	}
	ctx, counts := context.Background(), []int{B}
	run := func(b *testing.B, f func() error) {
		if err := f(); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		cpu := cputime.Start()
		for b.Loop() {
			if err := f(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(B*b.N)/b.Elapsed().Seconds(), "samples/s")
		cpu.Report(b)
	}
	for _, mask := range []bool{false, true} {
		name := "clip"
		if mask {
			name = "clip-mask"
		}
		b.Run(name, func(b *testing.B) {
			c := CLIP[float32]{MaskFalseNegatives: mask}
			in := CLIPInput[float32]{U: u, V: v, D: d, Counts: counts, Scale: 1 / 0.07, IDs: ids, DU: du, DV: dv}
			run(b, func() error { _, err := c.Compute(ctx, Single{}, in); return err })
		})
	}
	b.Run("ntxent", func(b *testing.B) {
		n := NTXent[float32]{}
		in := NTXentInput[float32]{Z1: u, Z2: v, D: d, Counts: counts, Scale: 5, DZ1: du, DZ2: dv}
		run(b, func() error { _, err := n.Compute(ctx, Single{}, in); return err })
	})
	b.Run("moco", func(b *testing.B) {
		m := MoCo[float32]{Queue: NewQueue[float32](8*B, d, 1)}
		in := MoCoInput[float32]{Q1: u, K2: v, D: d, Counts: counts, Scale: 5, DQ1: du}
		run(b, func() error { _, err := m.Compute(ctx, Single{}, in); return err })
	})
}

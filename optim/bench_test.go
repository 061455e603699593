package optim

import (
	"math/rand/v2"
	"testing"

	"github.com/infonce/infonce/internal/cputime"
)

// BenchmarkAdamW times one float32 AdamW step over a flat buffer of 2¹⁹
// parameters (about the default towers) in two groups, with and without
// weight decay.
func BenchmarkAdamW(b *testing.B) {
	const n = 1 << 19
	groups := []Group{{Name: "W", Off: 0, Len: n - 1024}, {Name: "b", Off: n - 1024, Len: 1024, NoDecay: true}}
	rng := rand.New(rand.NewPCG(3, 4))
	w, g := make([]float32, n), make([]float32, n)
	for i := range w {
		w[i], g[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())/100
	}
	cfg := DefaultAdamWConfig()
	cfg.WeightDecay = 0.1
	o := NewAdamW[float32](n, groups, cfg)
	b.SetBytes(4 * 4 * n)
	cpu := cputime.Start()
	for b.Loop() {
		if err := o.Step(w, g, 1e-3); err != nil {
			b.Fatal(err)
		}
	}
	cpu.Report(b)
}

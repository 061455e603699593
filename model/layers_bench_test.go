package model

import (
	"math/rand/v2"
	"testing"

	"github.com/infonce/infonce/internal/cputime"
)

// BenchmarkLayers times the element-wise layers on a float32 batch of 512
// rows of width 512 (the first hidden layer of the default image tower).
func BenchmarkLayers(b *testing.B) {
	// loop runs f b.N times and reports the process CPU time per call.
	loop := func(b *testing.B, f func()) {
		cpu := cputime.Start()
		for b.Loop() {
			f()
		}
		cpu.Report(b)
	}
	const rows, n = 512, 512
	rng := rand.New(rand.NewPCG(5, 6))
	x, dy := make([]float32, rows*n), make([]float32, rows*n)
	for i := range x {
		x[i], dy[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	b.Run("relu", func(b *testing.B) {
		r := ReLU[float32]{N: n}
		loop(b, func() {
			if _, err := r.Forward(x, rows); err != nil {
				b.Fatal(err)
			}
			if _, err := r.Backward(dy); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("linear-bias-grad", func(b *testing.B) {
		// A Linear n→n whose weight gradient is the bulk of Backward;
		// the bias part Σ_rows dy is what the element-wise kernels change.
		l := Linear[float32]{In: 8, Out: n, W: make([]float32, 8*n), B: make([]float32, n),
			DW: make([]float32, 8*n), DB: make([]float32, n), NoInputGrad: true}
		in := make([]float32, rows*8)
		if _, err := l.Forward(in, rows); err != nil {
			b.Fatal(err)
		}
		loop(b, func() {
			if _, err := l.Backward(dy); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("l2normalize", func(b *testing.B) {
		l := L2Normalize[float32]{N: 64}
		xs := x[:rows*64]
		loop(b, func() {
			if _, err := l.Forward(xs, rows); err != nil {
				b.Fatal(err)
			}
			if _, err := l.Backward(dy[:rows*64]); err != nil {
				b.Fatal(err)
			}
		})
	})
}

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

// BenchmarkNorms times one float32 Forward and Backward of LayerNorm at
// the shape of the ViT reference job (a batch of 256 × 65 tokens = 16,640
// rows of width 192) and of the text tower (8,192 rows of 128), and of
// GroupNorm at the CNN stem of the cnn reference job (32 channels of
// 64×64 in 8 groups, 32 images), each as "serial" (the row-by-row float64
// statistics of the mlp and bow towers) and "fast32" (Fast32: the kernels
// of package vec, rows and groups over GOMAXPROCS goroutines). ns/op is
// wall time, cpu-ns/op the process's CPU time.
func BenchmarkNorms(b *testing.B) {
	rng := rand.New(rand.NewPCG(9, 10))
	cases := []struct {
		name  string
		in    int // values per batch row
		batch int
		build func(fast bool) Layer[float32]
	}{
		{"layernorm-16640x192", 192, 16640, func(fast bool) Layer[float32] {
			return &LayerNorm[float32]{N: 192, Gain: normValues(rng, 192, 1, 0.2), Bias: normValues(rng, 192, 0, 0.2),
				DGain: make([]float32, 192), DBias: make([]float32, 192), Fast32: fast}
		}},
		{"layernorm-8192x128", 128, 8192, func(fast bool) Layer[float32] {
			return &LayerNorm[float32]{N: 128, Gain: normValues(rng, 128, 1, 0.2), Bias: normValues(rng, 128, 0, 0.2),
				DGain: make([]float32, 128), DBias: make([]float32, 128), Fast32: fast}
		}},
		{"groupnorm-32x32x64x64-G8", 32 * 64 * 64, 32, func(fast bool) Layer[float32] {
			return &GroupNorm[float32]{C: 32, G: 8, S: 64 * 64, Gain: normValues(rng, 32, 1, 0.2), Bias: normValues(rng, 32, 0, 0.2),
				DGain: make([]float32, 32), DBias: make([]float32, 32), Fast32: fast}
		}},
	}
	for _, tc := range cases {
		x, dy := normValues(rng, tc.batch*tc.in, 0.1, 1), normValues(rng, tc.batch*tc.in, 0, 1)
		for _, fast := range []bool{false, true} {
			name := tc.name + "/serial"
			if fast {
				name = tc.name + "/fast32"
			}
			b.Run(name, func(b *testing.B) {
				l := tc.build(fast)
				step := func() {
					if _, err := l.Forward(x, tc.batch); err != nil {
						b.Fatal(err)
					}
					if _, err := l.Backward(dy); err != nil {
						b.Fatal(err)
					}
				}
				step()
				b.ReportAllocs()
				cpu := cputime.Start()
				for b.Loop() {
					step()
				}
				cpu.Report(b)
			})
		}
	}
}

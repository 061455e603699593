package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// BenchmarkKernels times every kernel of every implementation on a row of
// 1024 logits (the default chunk), and, as "math.Exp", the float64 loop
// the streamed log-sum-exp runs without this package.
func BenchmarkKernels(b *testing.B) {
	const n = 1024
	rng := rand.New(rand.NewPCG(1, 1))
	x, y, z := randRow(rng, n, 20, 14), randRow(rng, n, 1, 1), randRow(rng, n, 0, 14)
	dst := make([]float32, n)
	const shift = 14
	b.Run("ExpSum/math.Exp", func(b *testing.B) {
		b.SetBytes(4 * n)
		var s float64
		for b.Loop() {
			var z float64
			for _, v := range x {
				z += math.Exp(float64(v) - shift)
			}
			s += z
		}
	})
	b.Run("ExpPairScale/math.Exp", func(b *testing.B) {
		b.SetBytes(4 * n)
		var dt float64
		for b.Loop() {
			for j, v := range x {
				g := (math.Exp(float64(v)-shift) + math.Exp(float64(v)-float64(z[j]))) / 1024
				dt += g * float64(v)
				dst[j] = float32(g)
			}
		}
	})
	for _, k := range implementations() {
		b.Run("Max/"+k.name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				k.max(x)
			}
		})
		b.Run("ExpSum/"+k.name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				k.expSum(x, shift)
			}
		})
		b.Run("ExpScale/"+k.name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				k.expScale(dst, x, shift, 1)
			}
		})
		b.Run("ExpPairScale/"+k.name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				k.expPairScale(dst, x, shift, z, 1.0/1024)
			}
		})
		b.Run("AdamW/"+k.name, func(b *testing.B) {
			w, g, m, v := clone(y), clone(y), clone(z), clone(z)
			c := adamWConsts{0.9, 0.1, 0.999, 0.001, 10, 1000, 1e-8, 1e-3, 0.1}
			b.SetBytes(4 * n)
			for b.Loop() {
				k.adamW(w, g, m, v, c)
			}
		})
		b.Run("ReLU/"+k.name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				k.relu(dst, y)
			}
		})
		b.Run("ReLUGrad/"+k.name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				k.reluGrad(dst, x, y)
			}
		})
		b.Run("Dot/"+k.name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				k.dot(x, y)
			}
		})
		b.Run("ScaleSub/"+k.name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				k.scaleSub(dst, x, y, 0.5, 2)
			}
		})
		b.Run("Add/"+k.name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				k.add(dst, y)
			}
		})
		b.Run("GELU/"+k.name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				k.gelu(dst, y)
			}
		})
		b.Run("GELUGrad/"+k.name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				k.geluGrad(dst, x, y)
			}
		})
		c := NewNorm(0.1, 1.3)
		b.Run("Moments/"+k.name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				k.moments(y, 0.5)
			}
		})
		b.Run("NormAffine/"+k.name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				k.normAffine(dst, y, x, z, c)
			}
		})
		b.Run("NormGradAffine/"+k.name, func(b *testing.B) {
			dg, db := make([]float32, n), make([]float32, n)
			b.SetBytes(4 * n)
			for b.Loop() {
				k.normGradAffine(dg, db, y, x, z, c)
			}
		})
		b.Run("NormGradInput/"+k.name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				k.normGradInput(dst, y, x, z, c, 0.1, 0.2)
			}
		})
		h := make([]uint16, n)
		b.Run("AddBF16/"+k.name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				k.addBF16(dst, h)
			}
		})
		b.Run("ToBF16/"+k.name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				k.toBF16(h, y)
			}
		})
		b.Run("FromBF16/"+k.name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				k.fromBF16(dst, h)
			}
		})
	}
}

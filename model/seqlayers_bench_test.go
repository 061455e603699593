package model

import (
	"math/rand/v2"
	"testing"

	"github.com/infonce/infonce/internal/cputime"
	"github.com/infonce/infonce/vec"
)

// BenchmarkSeqLayers times one float32 Forward and Backward of the layers of
// the ViT, CNN and text encoders at the shapes they would have on a batch of
// 8: a ViT-Tiny-like attention (65 tokens of 192, 3 heads), CLIP-like text
// attention (77 tokens of 256, 4 heads) with and without the causal mask,
// a 3×3 convolution of a residual stage, the stem, and GroupNorm. Each runs
// with the element-wise kernels of package vec ("avx2") and with its
// portable Go code ("go"), to show what the vectorised float32 paths buy.
func BenchmarkSeqLayers(bm *testing.B) {
	const b = 8
	cases := []struct {
		name    string
		in, out int
		build   func(bl *builder[float32]) Layer[float32]
	}{
		{"attention-vit-L65-D192-H3", 65 * 192, 65 * 192, func(bl *builder[float32]) Layer[float32] {
			return bl.attention(192, 3, 65, false, 0)
		}},
		{"attention-text-L77-D256-H4", 77 * 256, 77 * 256, func(bl *builder[float32]) Layer[float32] {
			return bl.attention(256, 4, 77, false, 0)
		}},
		{"attention-text-causal-L77-D256-H4", 77 * 256, 77 * 256, func(bl *builder[float32]) Layer[float32] {
			return bl.attention(256, 4, 77, true, 0)
		}},
		{"conv3x3-64-16x16", 64 * 16 * 16, 64 * 16 * 16, func(bl *builder[float32]) Layer[float32] {
			return bl.conv(64, 64, 16, 16, 3, 3, 1, 1)
		}},
		{"conv3x3-stem-3-32x32", 3 * 32 * 32, 32 * 32 * 32, func(bl *builder[float32]) Layer[float32] {
			return bl.conv(3, 32, 32, 32, 3, 3, 1, 1)
		}},
		{"groupnorm-64-G8-16x16", 64 * 16 * 16, 64 * 16 * 16, func(bl *builder[float32]) Layer[float32] {
			return bl.groupNorm(64, 8, 256)
		}},
		{"meanpool-L77-D256", 77 * 256, 256, func(*builder[float32]) Layer[float32] {
			return &MeanPool[float32]{L: 77, D: 256}
		}},
	}
	for _, tc := range cases {
		for _, impl := range []string{"avx2", "go"} {
			bm.Run(tc.name+"/"+impl, func(bm *testing.B) {
				prev, err := vec.Use(impl)
				if err != nil {
					bm.Skip("this machine has no such implementation of package vec: ", err)
				}
				defer vec.Use(prev)
				bl := &builder[float32]{rng: rand.New(rand.NewPCG(3, 4))}
				l := tc.build(bl)
				x, r := randT[float32](bl.rng, b*tc.in), randT[float32](bl.rng, b*tc.out)
				step := func() {
					if _, err := l.Forward(x, b); err != nil {
						bm.Fatal(err)
					}
					if _, err := l.Backward(r); err != nil {
						bm.Fatal(err)
					}
				}
				step()
				bm.ReportAllocs()
				cpu := cputime.Start()
				for bm.Loop() {
					step()
				}
				cpu.Report(bm)
			})
		}
	}
}

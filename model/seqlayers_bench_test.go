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
// one long sequence (512 tokens of 64, one head) with and without it, where
// the scores outweigh the projections, the exact and the float32 GELU of
// a ViT-Base MLP's width, a 3×3 convolution of a residual stage, the stem, and GroupNorm. Each runs
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
		{"attention-L512-D64-H1", 512 * 64, 512 * 64, func(bl *builder[float32]) Layer[float32] {
			return bl.attention(64, 1, 512, false, 0)
		}},
		{"attention-causal-L512-D64-H1", 512 * 64, 512 * 64, func(bl *builder[float32]) Layer[float32] {
			return bl.attention(64, 1, 512, true, 0)
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
		{"gelu-65x768", 65 * 768, 65 * 768, func(*builder[float32]) Layer[float32] {
			return &GELU[float32]{N: 65 * 768} // math.Erf in float64
		}},
		{"gelu-fast32-65x768", 65 * 768, 65 * 768, func(*builder[float32]) Layer[float32] {
			return &GELU[float32]{N: 65 * 768, Fast32: true}
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

// BenchmarkEncoderTowers times one float32 Forward and Backward of the new
// towers on a batch of 64 MNIST-sized inputs and reports samples per
// second: a ViT (7×7 patches, 17 tokens of 64, 4 blocks of 4 heads), a
// CNN (16-32-64 channels, one block per stage) and a text transformer
// (12 of 16 ids, width 64, 4 blocks of 4 heads).
func BenchmarkEncoderTowers(bm *testing.B) {
	const b = 64
	base := Config{ImageIn: 784, Dim: 64, Activation: ActGELU, InitLogitScale: 1}
	vit := base
	vit.ImageTower, vit.ViT = TowerViT, ViTConfig{Patch: 7, Width: 64, Depth: 4, Heads: 4}
	cnn := base
	cnn.ImageTower, cnn.Activation, cnn.CNN = TowerCNN, ActReLU, CNNConfig{Width: 16, Stages: 3, Blocks: 1, Groups: 8}
	txt := base
	txt.ImageHidden = []int{8}
	txt.TextTower, txt.TextVocab, txt.Transformer = TowerTransformer, 1000, TransformerConfig{Context: 16, Width: 64, Depth: 4, Heads: 4}
	rng := rand.New(rand.NewPCG(1, 1))
	x := randT[float32](rng, b*784)
	ids, offsets := make([]int32, b*12), make([]int32, b)
	for i := range ids {
		ids[i] = int32(rng.IntN(1000))
	}
	for i := range offsets {
		offsets[i] = int32(12 * i)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		text bool
	}{{"vit", vit, false}, {"cnn", cnn, false}, {"transformer", txt, true}} {
		bm.Run(tc.name, func(bm *testing.B) {
			m, err := New[float32](tc.cfg, 1)
			if err != nil {
				bm.Fatal(err)
			}
			tw, in := m.Image, Rows(x, b)
			if tc.text {
				tw, in = m.Text, Bags[float32](ids, offsets, b)
			}
			dy := randT[float32](rng, b*tc.cfg.Dim)
			step := func() {
				if _, err := tw.Forward(in); err != nil {
					bm.Fatal(err)
				}
				if err := tw.Backward(dy); err != nil {
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
			bm.ReportMetric(float64(b*bm.N)/bm.Elapsed().Seconds(), "samples/s")
		})
	}
}

// BenchmarkAttentionReference times one float32 Forward and Backward of
// MultiHeadAttention at the shapes of the reference ViT job on a batch of
// 256: the image tower's attention (65 tokens of 192, 3 heads) and the text
// tower's causal attention (32 tokens of 128, 2 heads). At these shapes the
// streamed softmax over the b·H sequences and heads costs about as much as
// the projections.
func BenchmarkAttentionReference(bm *testing.B) {
	const b = 256
	for _, tc := range []struct {
		name    string
		d, h, l int
		causal  bool
	}{
		{"vit-L65-D192-H3", 192, 3, 65, false},
		{"text-causal-L32-D128-H2", 128, 2, 32, true},
	} {
		bm.Run(tc.name, func(bm *testing.B) {
			bl := &builder[float32]{rng: rand.New(rand.NewPCG(5, 6))}
			a := bl.attention(tc.d, tc.h, tc.l, tc.causal, 0)
			x, r := randT[float32](bl.rng, b*tc.l*tc.d), randT[float32](bl.rng, b*tc.l*tc.d)
			step := func() {
				if _, err := a.Forward(x, b); err != nil {
					bm.Fatal(err)
				}
				if _, err := a.Backward(r); err != nil {
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

package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// encoderConfigs are small configurations of the "vit", "cnn" and
// "transformer" towers, small enough to perturb every parameter.
func encoderConfigs() map[string]Config {
	base := Config{ImageIn: 2 * 4 * 4, ImageShape: ImageShape{2, 4, 4}, Dim: 3, Activation: ActGELU,
		InitLogitScale: math.Log(1 / 0.07)}
	vitCLIP := base
	vitCLIP.ImageTower, vitCLIP.ViT = TowerViT, ViTConfig{Patch: 2, Width: 4, Depth: 2, Heads: 2, MLP: 6}
	vitCLIP.TextTower, vitCLIP.TextVocab = TowerTransformer, 9
	vitCLIP.Transformer = TransformerConfig{Context: 5, Width: 4, Depth: 1, Heads: 2, MLP: 5}
	vitMean := vitCLIP
	vitMean.ViT.Pool, vitMean.Transformer.Pool = "mean", "mean"
	cnn := base
	cnn.ImageTower, cnn.CNN = TowerCNN, CNNConfig{Width: 2, Stages: 2, Blocks: 2, Groups: 2}
	cnnReLU := cnn
	cnnReLU.Activation = ActReLU
	cnnReLU.ImageShape = ImageShape{2, 5, 3} // odd sides: the stride-2 stage rounds up
	cnnReLU.ImageIn = 2 * 5 * 3
	cnnReLU.CNN.Blocks = 1
	return map[string]Config{"vit-cls+transformer-eot": vitCLIP, "vit-mean+transformer-mean": vitMean, "cnn-gelu": cnn, "cnn-relu": cnnReLU}
}

// textRows are 4 rows of ids of lengths 5, 1, 3, 5 (the context is 5).
var (
	textIDs     = []int32{7, 1, 2, 3, 8, 7, 7, 4, 8, 7, 6, 5, 5, 8}
	textOffsets = []int32{0, 5, 6, 9}
)

// TestEncoderTowerGradients checks the gradient of every parameter of the
// new towers end to end against central differences, with L = r·u + q·v.
func TestEncoderTowerGradients(t *testing.T) {
	for name, cfg := range encoderConfigs() {
		t.Run(name, func(t *testing.T) {
			m, err := New[float64](cfg, 5)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(9, 9))
			// Move every parameter away from its initialisation (gains 1,
			// biases 0) so that every path carries a gradient.
			for i := range m.P.W {
				m.P.W[i] += 0.3 * rng.NormFloat64()
			}
			const b = 4
			x := randVec(rng, b*cfg.ImageIn)
			r, q := randVec(rng, b*cfg.Dim), randVec(rng, b*cfg.Dim)
			loss := func() float64 {
				u, err := m.Image.Forward(Rows(x, b))
				if err != nil {
					t.Fatal(err)
				}
				l := dot(r, u)
				if m.Text != nil {
					v, err := m.Text.Forward(Bags[float64](textIDs, textOffsets, b))
					if err != nil {
						t.Fatal(err)
					}
					l += dot(q, v)
				}
				return l
			}
			m.P.ZeroGrad()
			loss()
			if err := m.Image.Backward(r); err != nil {
				t.Fatal(err)
			}
			if m.Text != nil {
				if err := m.Text.Backward(q); err != nil {
					t.Fatal(err)
				}
			}
			g := slices.Clone(m.P.G)
			for _, s := range m.P.Segments {
				if s.Name == LogitScaleName {
					continue
				}
				w, _ := m.P.View(s)
				checkFD(t, s.Name, w, g[s.Off:s.Off+s.Len], loss)
			}
		})
	}
}

// TestEncoderTowersFloat32 runs each configuration in float32 and float64
// from the same parameters: embeddings and gradients agree to float32
// rounding.
func TestEncoderTowersFloat32(t *testing.T) {
	for name, cfg := range encoderConfigs() {
		t.Run(name, func(t *testing.T) {
			m32, err := New[float32](cfg, 3)
			if err != nil {
				t.Fatal(err)
			}
			m64, err := NewWithGrad[float64](cfg, 3, nil)
			if err != nil {
				t.Fatal(err)
			}
			copy(m64.P.W, widen(m32.P.W))
			rng := rand.New(rand.NewPCG(1, 2))
			const b = 4
			x32 := randT[float32](rng, b*cfg.ImageIn)
			r32 := randT[float32](rng, b*cfg.Dim)
			for pass := range 2 {
				m32.P.ZeroGrad()
				m64.P.ZeroGrad()
				u32, err := m32.Image.Forward(Rows(x32, b))
				if err != nil {
					t.Fatal(err)
				}
				u64, _ := m64.Image.Forward(Rows(widen(x32), b))
				if e := relErr(widen(u32), u64); e > 1e-5 {
					t.Errorf("pass %d: image embeddings: relative error %.3g", pass, e)
				}
				if err := m32.Image.Backward(r32); err != nil {
					t.Fatal(err)
				}
				if err := m64.Image.Backward(widen(r32)); err != nil {
					t.Fatal(err)
				}
				if m32.Text != nil {
					v32, err := m32.Text.Forward(Bags[float32](textIDs, textOffsets, b))
					if err != nil {
						t.Fatal(err)
					}
					v64, _ := m64.Text.Forward(Bags[float64](textIDs, textOffsets, b))
					if e := relErr(widen(v32), v64); e > 1e-5 {
						t.Errorf("pass %d: text embeddings: relative error %.3g", pass, e)
					}
					if err := m32.Text.Backward(r32); err != nil {
						t.Fatal(err)
					}
					if err := m64.Text.Backward(widen(r32)); err != nil {
						t.Fatal(err)
					}
				}
				for _, s := range m64.P.Segments {
					if s.Name == LogitScaleName {
						continue
					}
					if e := relErr(widen(m32.P.G[s.Off:s.Off+s.Len]), m64.P.G[s.Off:s.Off+s.Len]); e > 1e-4 {
						t.Errorf("pass %d: ∂L/∂%s: relative error %.3g", pass, s.Name, e)
					}
				}
			}
		})
	}
}

// TestEncoderGradReadyOrder checks that the towers hand over their
// gradients as one run of adjacent slices from the top of the buffer
// down to 0 when the text tower runs backward first, the logit scale's
// excepted, and that each slice is final when handed over.
func TestEncoderGradReadyOrder(t *testing.T) {
	for name, cfg := range encoderConfigs() {
		t.Run(name, func(t *testing.T) {
			m, err := New[float64](cfg, 2)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(3, 3))
			const b = 4
			x, r := randVec(rng, b*cfg.ImageIn), randVec(rng, b*cfg.Dim)
			type handed struct {
				off  int
				vals []float64
			}
			var got []handed
			m.SetGradReady(func(g []float64) {
				off := -1 // where g starts in P.G
				for i := range m.P.G {
					if &m.P.G[i] == &g[0] {
						off = i
					}
				}
				got = append(got, handed{off, slices.Clone(g)})
			})
			if _, err := m.Image.Forward(Rows(x, b)); err != nil {
				t.Fatal(err)
			}
			if m.Text != nil {
				if _, err := m.Text.Forward(Bags[float64](textIDs, textOffsets, b)); err != nil {
					t.Fatal(err)
				}
				if err := m.Text.Backward(r); err != nil {
					t.Fatal(err)
				}
			}
			if err := m.Image.Backward(r); err != nil {
				t.Fatal(err)
			}
			top := m.LogitScale
			for i, h := range got {
				if h.off+len(h.vals) != top {
					t.Fatalf("slice %d covers [%d, %d), want it to end at %d", i, h.off, h.off+len(h.vals), top)
				}
				if !slices.Equal(h.vals, m.P.G[h.off:top]) {
					t.Errorf("slice %d at %d changed after it was handed over", i, h.off)
				}
				top = h.off
			}
			if top != 0 {
				t.Errorf("the handed slices stop at %d, want 0", top)
			}
		})
	}
}

// TestTransformerIgnoresPadding checks that a text row's embedding does
// not depend on the other rows of its batch, hence not on how far its own
// row is padded: each row alone gives what it gives in the batch.
func TestTransformerIgnoresPadding(t *testing.T) {
	for _, name := range []string{"vit-cls+transformer-eot", "vit-mean+transformer-mean"} {
		cfg := encoderConfigs()[name]
		m, err := New[float64](cfg, 4)
		if err != nil {
			t.Fatal(err)
		}
		const b = 4
		v, err := m.Text.Forward(Bags[float64](textIDs, textOffsets, b))
		if err != nil {
			t.Fatal(err)
		}
		v = slices.Clone(v)
		for i := 0; i < b; i++ {
			lo, hi := int(textOffsets[i]), len(textIDs)
			if i+1 < b {
				hi = int(textOffsets[i+1])
			}
			one, err := m.Text.Forward(Bags[float64](textIDs[lo:hi], []int32{0}, 1))
			if err != nil {
				t.Fatal(err)
			}
			if e := relErr(one, v[i*cfg.Dim:(i+1)*cfg.Dim]); e > 1e-14 {
				t.Errorf("%s: row %d alone differs from the batch by %.3g", name, i, e)
			}
		}
		if _, err := m.Text.Forward(Bags[float64]([]int32{1, 2, 3, 4, 5, 6}, []int32{0}, 1)); err == nil {
			t.Errorf("%s: a row longer than the context was accepted", name)
		}
		if _, err := m.Text.Forward(Bags[float64]([]int32{1, 2}, []int32{0, 2}, 2)); err == nil {
			t.Errorf("%s: an empty row was accepted", name)
		}
	}
}

// TestEncoderConfigs checks the layouts against the counts, the Config
// checks, and that the default job's towers are untouched by the new
// fields.
func TestEncoderConfigs(t *testing.T) {
	for name, cfg := range encoderConfigs() {
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		n, ok := cfg.paramCount()
		if !ok || n != layoutOf(cfg.clone()).n {
			t.Errorf("%s: counted %d parameters (ok %v), laid out %d", name, n, ok, layoutOf(cfg.clone()).n)
		}
	}
	bad := encoderConfigs()["cnn-gelu"]
	bad.CNN.Groups = 3
	if bad.Validate() == nil {
		t.Error("cnn: 3 groups of 2 channels were accepted")
	}
	bad = encoderConfigs()["vit-cls+transformer-eot"]
	bad.ViT.Patch = 3
	bad.Transformer.Heads = 3
	bad.ImageShape = ImageShape{}
	err := bad.Validate()
	if err == nil {
		t.Fatal("a ViT patch of 3 on 4×4 images, 3 heads of width 4 and a non-square ImageIn were accepted")
	}
	t.Log(err)
}

// TestEncoderDefaults checks the shapes a Config gets when it names a kind
// and leaves its fields at zero, and that a Config of other kinds keeps
// them zero.
func TestEncoderDefaults(t *testing.T) {
	for _, tc := range []struct{ in, side, patch int }{{784, 28, 4}, {1024, 32, 4}, {224 * 224, 224, 28}, {25, 5, 5}, {9, 3, 1}} {
		c := Config{ImageIn: tc.in, Dim: 8, ImageTower: TowerViT, InitLogitScale: 1}
		if err := c.Validate(); err != nil {
			t.Fatalf("%d×%d: %v", tc.side, tc.side, err)
		}
		got := c.clone().ViT
		if want := (ViTConfig{Patch: tc.patch, Width: 64, Depth: 4, Heads: 4, Pool: "cls"}); got != want {
			t.Errorf("%d×%d: defaults %+v, want %+v", tc.side, tc.side, got, want)
		}
	}
	c := Config{ImageIn: 784, Dim: 8, ImageTower: TowerCNN, TextTower: TowerTransformer, TextVocab: 50, InitLogitScale: 1}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	cc := c.clone()
	if want := (CNNConfig{Width: 16, Stages: 3, Blocks: 1, Groups: 8}); cc.CNN != want {
		t.Errorf("cnn defaults %+v, want %+v", cc.CNN, want)
	}
	if want := (TransformerConfig{Context: 32, Width: 64, Depth: 2, Heads: 4, Pool: "eot"}); cc.Transformer != want {
		t.Errorf("transformer defaults %+v, want %+v", cc.Transformer, want)
	}
	if cc.ViT != (ViTConfig{}) {
		t.Errorf("a cnn Config got ViT fields %+v", cc.ViT)
	}
	d := DefaultConfig()
	d.TextVocab = 10
	if dc := d.clone(); dc.ViT != (ViTConfig{}) || dc.CNN != (CNNConfig{}) || dc.Transformer != (TransformerConfig{}) || dc.ImageShape != (ImageShape{}) {
		t.Errorf("the default Config got encoder fields: %+v", dc)
	}
}

// TestEncoderTowersNoAlloc checks that a float32 Forward and Backward of
// each tower allocate nothing once the caches exist.
func TestEncoderTowersNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	for name, cfg := range encoderConfigs() {
		m, err := New[float32](cfg, 1)
		if err != nil {
			t.Fatal(err)
		}
		const b = 4
		x, r := make([]float32, b*cfg.ImageIn), make([]float32, b*cfg.Dim)
		for i := range x {
			x[i] = float32(i%7) - 3
		}
		for i := range r {
			r[i] = float32(i%5) - 2
		}
		allocs := testing.AllocsPerRun(5, func() {
			if _, err := m.Image.Forward(Rows(x, b)); err != nil {
				t.Fatal(err)
			}
			if err := m.Image.Backward(r); err != nil {
				t.Fatal(err)
			}
			if m.Text != nil {
				if _, err := m.Text.Forward(Bags[float32](textIDs, textOffsets, b)); err != nil {
					t.Fatal(err)
				}
				if err := m.Text.Backward(r); err != nil {
					t.Fatal(err)
				}
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per step after warm-up", name, allocs)
		}
	}
}

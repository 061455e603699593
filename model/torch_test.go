package model_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/internal/safetensors"
	"github.com/infonce/infonce/model"
)

// The golden files of testdata/torch are written by
// bench/baselines/pytorch/towers.py --golden: PyTorch's forward and
// backward pass, in float64, of a small model per tower with float32
// weights, on fixed inputs, with the loss L = Σ R ⊙ U (R a fixed random
// projection of the L2-normalised embeddings U, so ∂L/∂U = R).
//
// The error of a tensor a against its reference r is the max-norm relative
// error max_i |a_i − r_i| / max_i |r_i|.
const (
	// Both sides in float64: the same maths, to rounding.
	torchTol64 = 1e-10
	// infonce in float32 against PyTorch in float64.
	torchTolEmb32  = 1e-5
	torchTolGrad32 = 1e-4
)

func relErr[T gemm.Float](got []T, want []float64) float64 {
	var d, m float64
	for i, w := range want {
		d = max(d, math.Abs(float64(got[i])-w))
		m = max(m, math.Abs(w))
	}
	if m == 0 {
		return d
	}
	return d / m
}

// torchGolden is one golden file.
type torchGolden struct {
	tower string
	cfg   model.Config
	file  *safetensors.File
}

func readTorchGolden(t *testing.T, tower string) torchGolden {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "torch", tower+".safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	g := torchGolden{tower: tower, file: f}
	if err := json.Unmarshal([]byte(f.Metadata["model"]), &g.cfg); err != nil {
		t.Fatalf("%s: metadata model: %v", tower, err)
	}
	return g
}

func (g torchGolden) f64(t *testing.T, name string) []float64 {
	t.Helper()
	ts, ok := g.file.Get(name)
	if !ok {
		t.Fatalf("%s: no tensor %q", g.tower, name)
	}
	v, err := ts.Float64()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// side is the prefix of the golden file's tower's parameters: the text
// tower's when the model has one, else the image tower's.
func (g torchGolden) side() string {
	if g.cfg.TextVocab > 0 {
		return "text."
	}
	return "image."
}

// run loads the golden weights into an infonce model of element type T,
// runs the tower forward on the golden inputs and backward from R, and
// returns the embeddings and the gradient of every golden parameter by its
// state_dict name.
func runTorchGolden[T gemm.Float](t *testing.T, g torchGolden) (emb []T, grads map[string][]T) {
	t.Helper()
	m, err := model.New[T](g.cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := g.cfg.TorchStateDict()
	if err != nil {
		t.Fatal(err)
	}
	loaded := 0
	for _, tt := range sd {
		if !strings.HasPrefix(tt.Name, g.side()) {
			continue
		}
		ts, ok := g.file.Get(tt.Name)
		if !ok {
			t.Fatalf("%s: the golden file has no %q", g.tower, tt.Name)
		}
		if !slices.Equal(ts.Shape, tt.Shape) {
			t.Fatalf("%s: %q has shape %v in PyTorch, %v in the mapping", g.tower, tt.Name, ts.Shape, tt.Shape)
		}
		v, err := ts.Float64()
		if err != nil {
			t.Fatal(err)
		}
		w, _ := m.P.View(tt.Segment)
		for i, x := range v {
			w[i] = T(x)
		}
		loaded++
	}
	for _, ts := range g.file.Tensors {
		if strings.HasPrefix(ts.Name, g.side()) && !slices.ContainsFunc(sd, func(tt model.TorchTensor) bool { return tt.Name == ts.Name }) {
			t.Errorf("%s: the golden file's %q has no segment", g.tower, ts.Name)
		}
	}
	if loaded == 0 {
		t.Fatalf("%s: no weight loaded", g.tower)
	}
	tower := m.Image
	var in model.Batch[T]
	if g.side() == "text." {
		tower = m.Text
		ids, _ := g.file.Get("input.ids")
		lens, _ := g.file.Get("input.lengths")
		idv, err := ids.Int64()
		if err != nil {
			t.Fatal(err)
		}
		lv, err := lens.Int64()
		if err != nil {
			t.Fatal(err)
		}
		L := ids.Shape[1]
		var row []int32
		var offsets []int32
		for i, n := range lv {
			offsets = append(offsets, int32(len(row)))
			for _, id := range idv[i*L : i*L+int(n)] {
				row = append(row, int32(id))
			}
		}
		in = model.Bags[T](row, offsets, len(lv))
	} else {
		x := g.f64(t, "input.images")
		xs := make([]T, len(x))
		for i, v := range x {
			xs[i] = T(v)
		}
		ts, _ := g.file.Get("input.images")
		in = model.Rows(xs, ts.Shape[0])
	}
	u, err := tower.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	emb = slices.Clone(u)
	r := g.f64(t, "loss.projection")
	dU := make([]T, len(r))
	for i, v := range r {
		dU[i] = T(v)
	}
	m.P.ZeroGrad()
	if err := tower.Backward(dU); err != nil {
		t.Fatal(err)
	}
	grads = map[string][]T{}
	for _, tt := range sd {
		if strings.HasPrefix(tt.Name, g.side()) {
			_, gr := m.P.View(tt.Segment)
			grads[tt.Name] = gr
		}
	}
	return emb, grads
}

// torchGoldenFiles are the golden files: each tower, the other pools of
// the transformers, and the CNN with GELU.
var torchGoldenFiles = []string{"vit", "vit_mean", "cnn", "cnn_gelu", "transformer", "transformer_mean"}

// TestTorchGolden checks each tower against PyTorch's reference module:
// the same embeddings and the same gradient of every parameter, in
// float64 to rounding (the same maths), and in float32 within 1e-5
// (embeddings) and 1e-4 (gradients) of PyTorch's float64 values.
func TestTorchGolden(t *testing.T) {
	for _, tower := range torchGoldenFiles {
		t.Run(tower, func(t *testing.T) {
			g := readTorchGolden(t, tower)
			want := g.f64(t, "output.embedding")
			emb64, grads64 := runTorchGolden[float64](t, g)
			emb32, grads32 := runTorchGolden[float32](t, g)
			e64, e32 := relErr(emb64, want), relErr(emb32, want)
			if e64 > torchTol64 {
				t.Errorf("float64 embeddings: relative error %.3g > %g", e64, torchTol64)
			}
			if e32 > torchTolEmb32 {
				t.Errorf("float32 embeddings: relative error %.3g > %g", e32, torchTolEmb32)
			}
			var g64, g32 float64
			var worst string
			for name := range grads64 {
				ref := g.f64(t, "grad."+name)
				a, b := relErr(grads64[name], ref), relErr(grads32[name], ref)
				if a > torchTol64 {
					t.Errorf("float64 gradient of %s: relative error %.3g > %g", name, a, torchTol64)
				}
				if b > torchTolGrad32 {
					t.Errorf("float32 gradient of %s: relative error %.3g > %g", name, b, torchTolGrad32)
				}
				g64 = max(g64, a)
				if b > g32 {
					g32, worst = b, name
				}
			}
			t.Logf("%s: max relative error, embeddings float64 %.2g float32 %.2g; gradients (%d tensors) float64 %.2g float32 %.2g (%s)",
				tower, e64, e32, len(grads64), g64, g32, worst)
		})
	}
}

// TestTorchStateDict checks the mapping for every kind of tower: every
// segment has a name and a shape of its length, names are unique, and
// the tensors tile the buffer in order.
func TestTorchStateDict(t *testing.T) {
	img := model.ImageShape{Channels: 3, Height: 8, Width: 8}
	base := model.DefaultConfig()
	base.ImageIn, base.ImageHidden, base.TextVocab = 192, []int{16, 8}, 30
	type kinds struct {
		image, text string
		ln          bool
	}
	cases := []kinds{
		{model.TowerMLP, model.TowerBagOfWords, false},
		{model.TowerMLP, model.TowerBagOfWords, true},
		{model.TowerViT, model.TowerTransformer, false},
		{model.TowerCNN, model.TowerTransformer, false},
		{model.TowerCNN, "", false},
	}
	// Every registered kind is among the cases: a new kind needs its
	// PyTorch shapes.
	for _, mod := range []string{model.ModalityImage, model.ModalityText} {
		for _, k := range model.TowerKinds(mod) {
			if !slices.ContainsFunc(cases, func(c kinds) bool { return c.image == k || c.text == k }) {
				t.Errorf("tower kind %q has no case here", k)
			}
		}
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s-%s-ln%v", c.image, c.text, c.ln), func(t *testing.T) {
			cfg := base
			cfg.ImageTower, cfg.TextTower, cfg.LayerNorm = c.image, c.text, c.ln
			if c.image != model.TowerMLP {
				cfg.ImageShape = img
			}
			if c.text == "" {
				cfg.TextVocab = 0
			}
			sd, err := cfg.TorchStateDict()
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			off := 0
			for _, tt := range sd {
				if seen[tt.Name] {
					t.Errorf("name %q twice", tt.Name)
				}
				seen[tt.Name] = true
				if tt.Segment.Off != off {
					t.Errorf("%s at offset %d, want %d", tt.Name, tt.Segment.Off, off)
				}
				off += tt.Segment.Len
				if strings.HasSuffix(tt.Name, ".gain") {
					t.Errorf("%s keeps infonce's name of a norm's weight", tt.Name)
				}
			}
			if off != cfg.NumParams() {
				t.Errorf("tensors cover %d values, the buffer holds %d", off, cfg.NumParams())
			}
			if last := sd[len(sd)-1]; last.Name != model.LogitScaleName || len(last.Shape) != 0 {
				t.Errorf("last tensor %s %v, want the 0-d logit_scale", last.Name, last.Shape)
			}
		})
	}
}

func ExampleConfig_TorchStateDict() {
	cfg := model.DefaultConfig()
	cfg.ImageIn, cfg.ImageHidden, cfg.Dim = 12, []int{4}, 2
	cfg.LayerNorm = true
	sd, err := cfg.TorchStateDict()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range sd {
		fmt.Println(t.Name, t.Shape, t.Segment.Name)
	}
	// Output:
	// image.fc0.weight [4 12] image.fc0.weight
	// image.fc0.bias [4] image.fc0.bias
	// image.ln0.weight [4] image.ln0.gain
	// image.ln0.bias [4] image.ln0.bias
	// image.proj.weight [2 4] image.proj.weight
	// image.proj.bias [2] image.proj.bias
	// logit_scale [] logit_scale
}

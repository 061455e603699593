package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/internal/safetensors"
	"github.com/infonce/infonce/model"
	"github.com/infonce/infonce/worker"
)

// saveModel writes a checkpoint of a fresh model of cfg under root, as a
// run records it (the params blob and the model config in the manifest).
func saveModel(t *testing.T, root string, cfg model.Config) *model.Model[float32] {
	t.Helper()
	m, err := model.New[float32](cfg, 7)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := json.Marshal(m.Cfg)
	if err != nil {
		t.Fatal(err)
	}
	man := checkpoint.Manifest{Step: 3, Extra: map[string]string{worker.ExtraModel: string(mc), "param_sha256": worker.ParamSHA256(m.P.W)}}
	if _, err := (&checkpoint.Store{Root: root}).Save(context.Background(), man, []checkpoint.Blob{{Name: "params", Data: checkpoint.Float32Bytes(m.P.W)}}); err != nil {
		t.Fatal(err)
	}
	return m
}

// exportConfigs are a model of each kind of tower.
func exportConfigs() map[string]model.Config {
	img := model.ImageShape{Channels: 3, Height: 8, Width: 8}
	base := model.DefaultConfig()
	base.ImageIn, base.ImageHidden, base.TextHidden, base.Dim, base.TextVocab = 192, []int{16}, 8, 8, 40
	vit := base
	vit.ImageTower, vit.ImageShape, vit.TextTower = model.TowerViT, img, model.TowerTransformer
	vit.ViT = model.ViTConfig{Width: 16, Depth: 1, Heads: 2}
	vit.Transformer = model.TransformerConfig{Context: 8, Width: 16, Depth: 1, Heads: 2}
	cnn := base
	cnn.ImageTower, cnn.ImageShape, cnn.Activation, cnn.LayerNorm = model.TowerCNN, img, model.ActGELU, true
	cnn.CNN = model.CNNConfig{Width: 4, Stages: 2, Blocks: 1, Groups: 2}
	mlp := base
	mlp.LayerNorm = true
	return map[string]model.Config{"vit-transformer": vit, "cnn-bow": cnn, "mlp-bow": mlp}
}

func TestExportSafetensors(t *testing.T) {
	for name, cfg := range exportConfigs() {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			m := saveModel(t, filepath.Join(root, "checkpoints"), cfg)
			out := filepath.Join(root, "model.safetensors")
			var stdout, stderr bytes.Buffer
			// A run directory means its newest checkpoint.
			if code := run(context.Background(), []string{"export", "--checkpoint", root, "--format", "safetensors", "--out", out}, &stdout, &stderr); code != 0 {
				t.Fatalf("export exited %d: %s", code, stderr.String())
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			f, err := safetensors.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			var got model.Config
			if err := json.Unmarshal([]byte(f.Metadata["model"]), &got); err != nil {
				t.Fatalf("metadata model: %v", err)
			}
			if got.NumParams() != len(m.P.W) || got.ImageTower != m.Cfg.ImageTower || got.TextTower != m.Cfg.TextTower {
				t.Errorf("metadata model %+v, want the checkpoint's %+v", got, m.Cfg)
			}
			if f.Metadata["step"] != "3" || f.Metadata["param_sha256"] != worker.ParamSHA256(m.P.W) {
				t.Errorf("metadata %v", f.Metadata)
			}
			// Every parameter, exactly once, bit for bit, under its
			// state_dict name and shape.
			sd, err := m.Cfg.TorchStateDict()
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Tensors) != len(sd) {
				t.Errorf("%d tensors, want %d", len(f.Tensors), len(sd))
			}
			covered := 0
			for _, tt := range sd {
				ts, ok := f.Get(tt.Name)
				if !ok {
					t.Fatalf("no tensor %q", tt.Name)
				}
				v, err := ts.Float32()
				if err != nil || ts.DType != safetensors.F32 {
					t.Fatalf("%s: %s, %v", tt.Name, ts.DType, err)
				}
				w, _ := m.P.View(tt.Segment)
				if !slices.Equal(ts.Shape, tt.Shape) || !slices.Equal(v, w) {
					t.Errorf("%s: shape %v, values differ from the checkpoint's: %v", tt.Name, ts.Shape, !slices.Equal(v, w))
				}
				covered += len(v)
			}
			if covered != len(m.P.W) {
				t.Errorf("tensors hold %d values, the checkpoint %d", covered, len(m.P.W))
			}
			if strings.Contains(strings.Join(f.Names(), " "), ".gain") {
				t.Errorf("names keep infonce's .gain: %v", f.Names())
			}
			torchLoads(t, out, m)
		})
	}
}

func TestExportRefuses(t *testing.T) {
	root := t.TempDir()
	saveModel(t, root, exportConfigs()["mlp-bow"])
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"export", "--checkpoint", root}, 2, "--out"},
		{[]string{"export", "--checkpoint", root, "--format", "onnx", "--out", filepath.Join(root, "x")}, 2, "safetensors"},
		{[]string{"export", "--checkpoint", filepath.Join(root, "none"), "--out", filepath.Join(root, "x")}, 1, "none"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), c.args, &stdout, &stderr); code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", c.args, code, c.code, stderr.String(), c.want)
		}
	}
}

// torchPython is the python with Debian's PyTorch that
// bench/baselines/pytorch/towers.py runs on ($INFONCE_TORCH_PYTHON, or
// /usr/bin/python3), or "" when it has no torch.
func torchPython() string {
	py := os.Getenv("INFONCE_TORCH_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	if exec.Command(py, "-c", "import torch, numpy").Run() != nil {
		return ""
	}
	return py
}

// torchLoads loads the exported file into the PyTorch reference model
// (towers.py --load: load_state_dict with strict=True) and checks that its
// embeddings of the script's fixed input are infonce's, within 1e-5
// relative (both in float32). It skips without PyTorch, which the build
// does not need.
func torchLoads(t *testing.T, file string, m *model.Model[float32]) {
	t.Helper()
	py := torchPython()
	if py == "" {
		t.Log("PyTorch check skipped: no python with torch and numpy (set INFONCE_TORCH_PYTHON)")
		return
	}
	const rows = 3
	cmd := exec.Command(py, filepath.Join("..", "..", "bench", "baselines", "pytorch", "towers.py"), "--load", file, "--rows", "3")
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	outb, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("towers.py --load: %v: %s", err, stderr)
	}
	var res struct {
		Image [][]float64 `json:"image_embedding"`
		Text  [][]float64 `json:"text_embedding"`
	}
	if err := json.Unmarshal(outb, &res); err != nil {
		t.Fatalf("towers.py output %q: %v", outb, err)
	}
	// The fixed input of towers.py: pixel (c, y, x) of image n is
	// ((n+1)(c+1) + y + x) mod 7 / 6; text row i is the ids 1, 2, … of
	// length min(L, i+1) (ids t mod (vocab−1) + 1).
	cfg := m.Cfg
	C, H, W := cfg.ImageShape.Channels, cfg.ImageShape.Height, cfg.ImageShape.Width
	if C == 0 {
		side := int(math.Round(math.Sqrt(float64(cfg.ImageIn))))
		C, H, W = 1, side, side
		if side*side != cfg.ImageIn {
			H, W = 1, cfg.ImageIn // an mlp tower's flat rows
		}
	}
	x := make([]float32, 0, rows*C*H*W)
	for n := range rows {
		for c := range C {
			for y := range H {
				for xx := range W {
					x = append(x, float32(((n+1)*(c+1)+y+xx)%7)/6)
				}
			}
		}
	}
	u, err := m.Image.Forward(model.Rows(x, rows))
	if err != nil {
		t.Fatal(err)
	}
	compareEmb(t, "image", u, res.Image)
	if m.Text == nil {
		return
	}
	L := cfg.Transformer.Context
	if L == 0 {
		L = 8
	}
	var ids, offsets []int32
	for i := range rows {
		offsets = append(offsets, int32(len(ids)))
		for j := range min(L, i+1) {
			ids = append(ids, int32(j%(cfg.TextVocab-1)+1))
		}
	}
	v, err := m.Text.Forward(model.Bags[float32](ids, offsets, rows))
	if err != nil {
		t.Fatal(err)
	}
	compareEmb(t, "text", v, res.Text)
}

func compareEmb(t *testing.T, side string, got []float32, want [][]float64) {
	t.Helper()
	var d, mx float64
	k := 0
	for _, row := range want {
		for _, w := range row {
			d = max(d, math.Abs(float64(got[k])-w))
			mx = max(mx, math.Abs(w))
			k++
		}
	}
	if k != len(got) {
		t.Fatalf("%s: PyTorch gave %d values, infonce %d", side, k, len(got))
	}
	if rel := d / mx; rel > 1e-5 {
		t.Errorf("%s embeddings: PyTorch and infonce differ by %.3g relative", side, rel)
	} else {
		t.Logf("%s embeddings: PyTorch and infonce agree within %.2g relative", side, rel)
	}
}

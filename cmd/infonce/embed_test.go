package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/npy"
	"github.com/infonce/infonce/model"
	"github.com/infonce/infonce/worker"
)

// trainTiny trains a vit + transformer model for 4 steps and returns its
// run directory.
func trainTiny(t *testing.T, extra ...string) string {
	t.Helper()
	out := t.TempDir()
	args := append([]string{"train", "--no-eval", "--steps", "4", "--batch", "32", "--dim", "8", "--out", out,
		"--image-tower", "vit", "--vit-width", "16", "--vit-depth", "1", "--vit-heads", "2",
		"--text-tower", "transformer", "--text-width", "16", "--text-depth", "1", "--text-heads", "2", "--context-length", "16"}, extra...)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("train exited %d: %s", code, stderr.String())
	}
	return out
}

// readEmbed reads an embed output: the array and the JSON Lines beside it.
func readEmbed(t *testing.T, path string) (*npy.Array, []float32, []embedLine) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := npy.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	v := a.Float32(nil)
	jf, err := os.Open(strings.TrimSuffix(path, ".npy") + ".jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer jf.Close()
	var lines []embedLine
	sc := bufio.NewScanner(jf)
	for sc.Scan() {
		var l embedLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return a, v, lines
}

func embedCmd(t *testing.T, args ...string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), append([]string{"embed"}, args...), &stdout, &stderr); code != 0 {
		t.Fatalf("embed %v exited %d: %s", args, code, stderr.String())
	}
}

func maxDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func TestEmbedImagesAndTexts(t *testing.T) {
	runDir := trainTiny(t)
	tmp := t.TempDir()

	// Images: the MNIST test split, in batches of 300 and of 1000.
	a300, a1000 := filepath.Join(tmp, "img300.npy"), filepath.Join(tmp, "img1000.npy")
	embedCmd(t, "--checkpoint", runDir, "--images", "mnist", "--test", "--batch", "300", "--out", a300)
	embedCmd(t, "--checkpoint", runDir, "--images", "mnist", "--test", "--batch", "1000", "--out", a1000)
	arr, emb, lines := readEmbed(t, a300)
	_, emb2, _ := readEmbed(t, a1000)
	if len(arr.Shape) != 2 || arr.Shape[0] != 10000 || arr.Shape[1] != 8 || len(lines) != 10000 {
		t.Fatalf("shape %v and %d id lines, want [10000 8] and 10000", arr.Shape, len(lines))
	}
	for i, l := range []embedLine{lines[0], lines[9999]} {
		want := []int{0, 9999}[i]
		if l.Index != want || l.Sample == nil || *l.Sample != want || l.Key == "" {
			t.Errorf("id line %+v, want index and sample %d and a key", l, want)
		}
	}
	if d := maxDiff(emb, emb2); d > 1e-6 {
		t.Errorf("batches of 300 and 1000 differ by %g", d)
	}
	for i := 0; i < 10000; i += 997 {
		var n float64
		for _, v := range emb[i*8 : (i+1)*8] {
			n += float64(v) * float64(v)
		}
		if math.Abs(n-1) > 1e-5 {
			t.Errorf("row %d has norm² %g, want 1", i, n)
		}
	}
	// Row i is the image tower of the checkpoint on test image i, as
	// x/255.
	dir, err := checkpoint.Locate(runDir)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := worker.LoadForEval(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	set, err := dataset.Load("mnist", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1234, 9999} {
		x := make([]float32, 784)
		dataset.Pixels(set.Test.Image(i), x)
		u, err := tr.Model.Image.Forward(model.Rows(x, 1))
		if err != nil {
			t.Fatal(err)
		}
		if d := maxDiff(u, emb[i*8:(i+1)*8]); d > 1e-6 {
			t.Errorf("row %d differs from the image tower on test image %d by %g", i, i, d)
		}
	}

	// Texts: one per line, the empty line included; equal lines give
	// equal rows, whatever the batch.
	txt := filepath.Join(tmp, "texts.txt")
	texts := "a photo of the number 7\nzero\n\na photo of the number 7\r\n"
	if err := os.WriteFile(txt, []byte(texts), 0o644); err != nil {
		t.Fatal(err)
	}
	t2, t1 := filepath.Join(tmp, "txt2.npy"), filepath.Join(tmp, "txt1.npy")
	embedCmd(t, "--checkpoint", runDir, "--text", txt, "--batch", "2", "--out", t2)
	embedCmd(t, "--checkpoint", runDir, "--text", txt, "--batch", "1", "--out", t1)
	arr, te, tl := readEmbed(t, t2)
	_, te1, _ := readEmbed(t, t1)
	if arr.Shape[0] != 4 || arr.Shape[1] != 8 || len(tl) != 4 {
		t.Fatalf("shape %v and %d id lines, want [4 8] and 4", arr.Shape, len(tl))
	}
	if tl[0].Key != "a photo of the number 7" || tl[3].Key != tl[0].Key || tl[2].Key != "" || tl[3].Line != 4 {
		t.Errorf("id lines %+v", tl)
	}
	if d := maxDiff(te[0:8], te[24:32]); d > 1e-6 {
		t.Errorf("equal lines differ by %g", d)
	}
	if d := maxDiff(te[0:8], te[8:16]); d < 1e-3 {
		t.Errorf("different lines give the same embedding (differ by %g)", d)
	}
	if d := maxDiff(te, te1); d > 1e-6 {
		t.Errorf("batches of 2 and 1 differ by %g", d)
	}
}

func TestEmbedRefuses(t *testing.T) {
	tmp := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"embed", "--checkpoint", tmp, "--out", filepath.Join(tmp, "a.npy")}, "one of --images and --text"},
		{[]string{"embed", "--checkpoint", tmp, "--images", "mnist", "--text", "f", "--out", filepath.Join(tmp, "a.npy")}, "one of --images and --text"},
		{[]string{"embed", "--checkpoint", tmp, "--images", "mnist", "--out", filepath.Join(tmp, "a.bin")}, ".npy"},
		{[]string{"embed", "--checkpoint", tmp, "--images", "mnist", "--batch", "0", "--out", filepath.Join(tmp, "a.npy")}, "--batch"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), c.args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q, want 2 and %q", c.args[1:], code, stderr.String(), c.want)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"embed", "--checkpoint", tmp, "--images", "mnist", "--out", filepath.Join(tmp, "a.npy")}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "no checkpoint") {
		t.Errorf("embed of a folder without checkpoints: exit %d, stderr %q", code, stderr.String())
	}
}

// TestEmbedSourceImages embeds a source through the evaluation view of a
// run trained on a source.
func TestEmbedSourceImages(t *testing.T) {
	runDir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"train", "--no-eval", "--steps", "2", "--batch", "16", "--dim", "8", "--data", "synthetic:64",
		"--image-size", "16", "--image-tower", "cnn", "--cnn-width", "4", "--cnn-stages", "2", "--out", runDir}, &stdout, &stderr); code != 0 {
		t.Fatalf("train exited %d: %s", code, stderr.String())
	}
	tmp := t.TempDir()
	a7, a20 := filepath.Join(tmp, "a7.npy"), filepath.Join(tmp, "a20.npy")
	embedCmd(t, "--checkpoint", runDir, "--images", "synthetic:20", "--batch", "7", "--out", a7)
	embedCmd(t, "--checkpoint", runDir, "--images", "synthetic:20", "--batch", "20", "--out", a20)
	arr, emb, lines := readEmbed(t, a7)
	_, emb20, _ := readEmbed(t, a20)
	if arr.Shape[0] != 20 || arr.Shape[1] != 8 || len(lines) != 20 || lines[19].Index != 19 || *lines[19].Sample != 19 {
		t.Fatalf("shape %v, %d id lines (last %+v)", arr.Shape, len(lines), lines[len(lines)-1])
	}
	if d := maxDiff(emb, emb20); d > 1e-6 {
		t.Errorf("batches of 7 and 20 differ by %g", d)
	}
	// Row 5 is the image tower on the evaluation view of sample 5.
	dir, err := checkpoint.Locate(runDir)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := worker.LoadForEval(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	src, err := dataset.Open("synthetic:20", dataset.OpenOptions{Seed: tr.Cfg.Seed})
	if err != nil {
		t.Fatal(err)
	}
	var s dataset.Sample
	if err := src.Sample(context.Background(), 5, &s); err != nil {
		t.Fatal(err)
	}
	view := dataset.EvalViewConfig(16)
	view.Channels = tr.Model.Cfg.ImageShape.Channels
	x := make([]float32, view.ViewLen())
	if err := dataset.View(view, s.Image, tr.Cfg.Seed, -1, 5, 0, x); err != nil {
		t.Fatal(err)
	}
	u, err := tr.Model.Image.Forward(model.Rows(x, 1))
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(u, emb[5*8:6*8]); d > 1e-6 {
		t.Errorf("row 5 differs from the image tower on the evaluation view of sample 5 by %g", d)
	}
}

package worker

import (
	"context"
	"math"
	"strings"
	"testing"
)

// TestEmbedImagesSkipsBadSamples: EmbedImages encodes every usable image
// of a folder through the evaluation view, whatever the batch, names each
// row, and leaves out (and counts) the corrupt ones.
func TestEmbedImagesSkipsBadSamples(t *testing.T) {
	spec := writeShapes(t, t.TempDir(), 3, 2) // 4 classes × 3 images, 2 corrupt
	cfg := sourceConfig(t, CLIP, spec)
	tr, err := NewTrainerData[float32](cfg, loadData(t, cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	src, err := tr.OpenImages(spec, false)
	if err != nil {
		t.Fatal(err)
	}
	d := tr.Model.Cfg.Dim
	var first []float32
	for _, batch := range []int{1, 5, 100} {
		emb, rows, bad, err := tr.EmbedImages(context.Background(), src, batch)
		if err != nil {
			t.Fatal(err)
		}
		if bad != 2 || len(rows) != 12 || len(emb) != 12*d {
			t.Fatalf("batch %d: %d rows, %d values, %d bad; want 12, %d, 2", batch, len(rows), len(emb), bad, 12*d)
		}
		for i, r := range rows {
			if strings.Contains(r.Key, "bad") || r.Key == "" || (i > 0 && r.Sample <= rows[i-1].Sample) {
				t.Errorf("batch %d: row %d is %+v", batch, i, r)
			}
			var n float64
			for _, v := range emb[i*d : (i+1)*d] {
				n += float64(v) * float64(v)
			}
			if math.Abs(n-1) > 1e-5 {
				t.Errorf("batch %d: row %d has norm² %g", batch, i, n)
			}
		}
		if first == nil {
			first = emb
			continue
		}
		for i := range emb {
			if math.Abs(float64(emb[i]-first[i])) > 1e-6 {
				t.Fatalf("batch %d: value %d is %v, %v with batch 1", batch, i, emb[i], first[i])
			}
		}
	}
	if _, _, _, err := tr.EmbedImages(context.Background(), src, 0); err == nil {
		t.Error("batch 0 accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, _, err := tr.EmbedImages(ctx, src, 4); err == nil {
		t.Error("a cancelled context went unnoticed")
	}
}

// TestEmbedTexts: one row per text, equal texts equal rows; an
// image-only model refuses.
func TestEmbedTexts(t *testing.T) {
	cfg := sourceConfig(t, CLIP, writeShapes(t, t.TempDir(), 3, 0))
	tr, err := NewTrainerData[float32](cfg, loadData(t, cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	d := tr.Model.Cfg.Dim
	v, err := tr.EmbedTexts(context.Background(), []string{"a red square", "a blue disc", "a red square"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 3*d {
		t.Fatalf("%d values, want %d", len(v), 3*d)
	}
	var same, diff float64
	for j := range d {
		same = max(same, math.Abs(float64(v[j]-v[2*d+j])))
		diff = max(diff, math.Abs(float64(v[j]-v[d+j])))
	}
	if same > 1e-6 || diff < 1e-4 {
		t.Errorf("equal texts differ by %g, different ones by %g", same, diff)
	}

	cfg = sourceConfig(t, SimCLR, writeShapes(t, t.TempDir(), 3, 0))
	img, err := NewTrainerData[float32](cfg, loadData(t, cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if _, err := img.EmbedTexts(context.Background(), []string{"x"}, 1); err == nil || !strings.Contains(err.Error(), "no text tower") {
		t.Errorf("an image-only model embedded a text: %v", err)
	}
}

package folder

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infonce/infonce/dataset"
)

func writeImage(t *testing.T, path string, format string, c color.Color) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	im := image.NewRGBA(image.Rect(0, 0, 5, 4))
	for i := range 20 {
		if c != nil {
			im.Set(i%5, i/5, c)
		}
	}
	var buf bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&buf, im)
	case "jpg":
		err = jpeg.Encode(&buf, im, nil)
	case "gif":
		err = gif.Encode(&buf, im, nil)
	default:
		buf.WriteString("garbage")
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSource(t *testing.T) {
	dir := t.TempDir()
	writeImage(t, filepath.Join(dir, "zebra", "b.png"), "png", color.White)
	writeImage(t, filepath.Join(dir, "zebra", "a.jpg"), "jpg", color.Black)
	writeImage(t, filepath.Join(dir, "golden_retriever", "sub", "x.GIF"), "gif", color.RGBA{255, 0, 0, 255})
	writeImage(t, filepath.Join(dir, "golden_retriever", "notes.txt"), "txt", nil)
	writeImage(t, filepath.Join(dir, "aardvark", "broken.png"), "txt", nil)
	os.MkdirAll(filepath.Join(dir, "empty_class"), 0o755)
	os.WriteFile(filepath.Join(dir, "stray.png"), []byte("not in a class"), 0o644)
	tmpl := filepath.Join(t.TempDir(), "templates.txt")
	os.WriteFile(tmpl, []byte("itap of a {}.\n"), 0o644)

	src, err := Open(dir, dataset.OpenOptions{Templates: tmpl})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"aardvark", "empty class", "golden retriever", "zebra"}; !slices.Equal(src.Classes(), want) {
		t.Fatalf("classes %q, want %q", src.Classes(), want)
	}
	if src.Len() != 4 {
		t.Fatalf("%d images, want 4", src.Len())
	}
	ctx := context.Background()
	var s dataset.Sample
	err = src.Sample(ctx, 0, &s)
	var bad *dataset.BadSample
	if !errors.As(err, &bad) || bad.Reason != "corrupt-image" || !strings.Contains(bad.Key, "broken.png") {
		t.Fatalf("sample 0: %v, want corrupt-image of broken.png", err)
	}
	for i, want := range []struct {
		label int
		text  string
		pix   byte
	}{{2, "itap of a golden retriever.", 255}, {3, "itap of a zebra.", 0}, {3, "itap of a zebra.", 255}} {
		if err := src.Sample(ctx, i+1, &s); err != nil {
			t.Fatalf("sample %d: %v", i+1, err)
		}
		if s.Label != want.label || s.Text != want.text || s.Image.W != 5 || s.Image.H != 4 || s.Image.Pix[0] != want.pix {
			t.Errorf("sample %d: label %d %q %d×%d first byte %d; want %+v", i+1, s.Label, s.Text, s.Image.W, s.Image.H, s.Image.Pix[0], want)
		}
		for _, f := range src.Fields() {
			if !s.Has(f) {
				t.Errorf("sample %d lacks %s", i+1, f)
			}
		}
	}
	// A class folder that is a link.
	other := t.TempDir()
	writeImage(t, filepath.Join(other, "y.png"), "png", color.White)
	if err := os.Symlink(other, filepath.Join(dir, "linked")); err != nil {
		t.Skipf("no symbolic links here: %v", err)
	}
	src, err = Open(dir, dataset.OpenOptions{})
	if err != nil || src.Len() != 5 || src.Classes()[3] != "linked" {
		t.Fatalf("linked class: %d images, classes %q, %v", src.Len(), src.Classes(), err)
	}
	if err := src.Sample(ctx, 2, &s); err != nil || s.Label != 3 {
		t.Fatalf("image of the linked class: %+v %v", s, err)
	}
	// Built-in templates without a file.
	src, err = Open(dir, dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src.Sample(ctx, 4, &s)
	if !strings.Contains(s.Text, "zebra") {
		t.Errorf("built-in caption %q", s.Text)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "none"), dataset.OpenOptions{}); err == nil || !strings.Contains(err.Error(), "<class>") {
		t.Errorf("missing folder: %v", err)
	}
	if _, err := Open(dir, dataset.OpenOptions{}); err == nil || !strings.Contains(err.Error(), "no class folder") {
		t.Errorf("empty folder: %v", err)
	}
	os.MkdirAll(filepath.Join(dir, "cat"), 0o755)
	os.WriteFile(filepath.Join(dir, "cat", "x.bmp"), []byte("bmp"), 0o644)
	if _, err := Open(dir, dataset.OpenOptions{}); err == nil || !strings.Contains(err.Error(), ".png") {
		t.Errorf("no image: %v", err)
	}
	writeImage(t, filepath.Join(dir, "cat", "x.png"), "png", color.White)
	bad := filepath.Join(dir, "t.txt")
	os.WriteFile(bad, []byte("no braces"), 0o644)
	if _, err := Open(dir, dataset.OpenOptions{Templates: bad}); err == nil {
		t.Error("a templates file without {} was accepted")
	}
}

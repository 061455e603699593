package manifest

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/npy"
)

func writePNG(t *testing.T, path string, w, h int) {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeNPY(t *testing.T, path string, v ...float32) {
	t.Helper()
	var buf bytes.Buffer
	if err := npy.Write(&buf, []int{len(v)}, v); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, buf.Bytes(), 0o644)
}

func reason(err error) string {
	var bad *dataset.BadSample
	if errors.As(err, &bad) {
		return bad.Reason
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return ""
}

func TestTSV(t *testing.T) {
	dir := t.TempDir()
	writePNG(t, filepath.Join(dir, "img", "a.png"), 3, 2)
	writePNG(t, filepath.Join(dir, "img", "b.png"), 4, 4)
	abs := filepath.Join(t.TempDir(), "c.png")
	writePNG(t, abs, 1, 1)
	writeNPY(t, filepath.Join(dir, "a.npy"), 1, 2, 3)
	writeNPY(t, filepath.Join(dir, "nan.npy"), 1, float32(nanF()), 3)
	manifest := "filepath\ttitle\tlabel\tact\n" +
		"img/a.png\ta \"quoted\" caption\tdog\ta.npy\n" +
		"img/b.png\t\tcat\ta.npy\n" +
		abs + "\tabsolute\tdog\ta.npy\n" +
		"img/b.png\tnan action\tcat\tnan.npy\n" +
		"img/missing.png\tx\tcat\ta.npy\n" +
		"img/a.png\ttoo\tmany\tfields\there\n"
	path := filepath.Join(dir, "train.tsv")
	os.WriteFile(path, []byte(manifest), 0o644)
	src, err := Open(path, dataset.OpenOptions{LabelKey: "label", ActionKey: "act"})
	if err != nil {
		t.Fatal(err)
	}
	if src.Len() != 6 || !slices.Equal(src.Classes(), []string{"cat", "dog"}) {
		t.Fatalf("len %d classes %q", src.Len(), src.Classes())
	}
	want := []dataset.Field{dataset.FieldImage, dataset.FieldText, dataset.FieldLabel, dataset.FieldAction}
	if !slices.Equal(src.Fields(), want) {
		t.Fatalf("fields %v", src.Fields())
	}
	ctx := context.Background()
	var s dataset.Sample
	if err := src.Sample(ctx, 0, &s); err != nil {
		t.Fatal(err)
	}
	if s.Text != `a "quoted" caption` || s.Label != 1 || s.Image.W != 3 || !slices.Equal(s.Action, []float32{1, 2, 3}) || !slices.Equal(s.ActionShape, []int{3}) {
		t.Fatalf("row 0: %+v", s)
	}
	for i, w := range []string{"", "missing-text", "", "non-finite-action", "unreadable-file", "bad-row"} {
		if got := reason(src.Sample(ctx, i, &s)); got != w {
			t.Errorf("row %d: %q, want %q", i, got, w)
		}
	}
}

func nanF() float64 { var z float64; return z / z }

func TestCSVOptions(t *testing.T) {
	dir := t.TempDir()
	writePNG(t, filepath.Join(dir, "x.png"), 2, 2)
	path := filepath.Join(dir, "m.csv")
	os.WriteFile(path, []byte("image,caption,y\nx.png,\"a, b\",3\nx.png,c,\n"), 0o644)
	src, err := Open(path, dataset.OpenOptions{Separator: ",", ImageKey: "image", CaptionKey: "caption", LabelKey: "y"})
	if err != nil {
		t.Fatal(err)
	}
	var s dataset.Sample
	if err := src.Sample(context.Background(), 0, &s); err != nil || s.Text != "a, b" || s.Label != 3 || src.Classes() != nil {
		t.Fatalf("row 0: %+v %v", s, err)
	}
	if r := reason(src.Sample(context.Background(), 1, &s)); r != "missing-label" {
		t.Fatalf("row 1: %q", r)
	}
	for name, o := range map[string]dataset.OpenOptions{
		"no caption column": {Separator: ",", ImageKey: "image", CaptionKey: "title"},
		"no label column":   {Separator: ",", ImageKey: "image", CaptionKey: "caption", LabelKey: "label"},
		"no columns":        {Separator: ","},
		"bad separator":     {Separator: "ab"},
	} {
		if _, err := Open(path, o); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
	if _, err := Open(filepath.Join(dir, "none.tsv"), dataset.OpenOptions{}); err == nil {
		t.Error("a missing manifest opened")
	}
	os.WriteFile(path, []byte("filepath\ttitle\n"), 0o644)
	if _, err := Open(path, dataset.OpenOptions{}); err == nil || !strings.Contains(err.Error(), "no row") {
		t.Errorf("empty manifest: %v", err)
	}
}

func TestJSONL(t *testing.T) {
	dir := t.TempDir()
	writePNG(t, filepath.Join(dir, "x.png"), 2, 2)
	writeNPY(t, filepath.Join(dir, "a.npy"), 4, 5)
	path := filepath.Join(dir, "m.jsonl")
	os.WriteFile(path, []byte(`{"filepath": "x.png", "title": "one", "label": 2, "action": [0.5, -1]}
{"filepath": "x.png", "title": "two", "label": 0, "action": "a.npy"}

not json
{"filepath": "x.png", "title": ["not", "a string"], "label": 1, "action": [1]}
`), 0o644)
	src, err := Open(path, dataset.OpenOptions{LabelKey: "label", ActionKey: "action"})
	if err != nil {
		t.Fatal(err)
	}
	if src.Len() != 4 {
		t.Fatalf("%d rows, want 4", src.Len())
	}
	ctx := context.Background()
	var s dataset.Sample
	if err := src.Sample(ctx, 0, &s); err != nil || s.Text != "one" || s.Label != 2 || !slices.Equal(s.Action, []float32{0.5, -1}) {
		t.Fatalf("row 0: %+v %v", s, err)
	}
	if err := src.Sample(ctx, 1, &s); err != nil || !slices.Equal(s.Action, []float32{4, 5}) {
		t.Fatalf("row 1: %+v %v", s, err)
	}
	for i, w := range []string{"", "", "bad-row", "bad-row"} {
		if got := reason(src.Sample(ctx, i, &s)); got != w {
			t.Errorf("row %d: %q, want %q", i, got, w)
		}
	}
}

func FuzzParseCSV(f *testing.F) {
	f.Add([]byte("filepath\ttitle\na.png\tcap\n"), byte('\t'))
	f.Add([]byte("filepath,title\n\"a,b\",\"c\"\"d\"\n,\n"), byte(','))
	f.Add([]byte("\"unterminated\n"), byte('\t'))
	f.Fuzz(func(t *testing.T, b []byte, sep byte) {
		if sep == '"' || sep == '\n' || sep == '\r' || sep >= 0x80 || sep == 0 {
			sep = '\t'
		}
		rows, header, err := ParseCSV(bytes.NewReader(b), Keys{Separator: rune(sep), Image: "filepath", Caption: "title"})
		if err != nil {
			return
		}
		for _, r := range rows {
			if r.Err == nil && !slices.Contains(header, "filepath") && r.Image != "" {
				t.Fatalf("an image %q without an image column", r.Image)
			}
		}
	})
}

func FuzzParseJSONL(f *testing.F) {
	f.Add([]byte(`{"filepath": "a.png", "title": "x", "label": 3, "action": [1, 2]}` + "\n"))
	f.Add([]byte("{}\n[]\nnull\n\"s\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, _, err := ParseJSONL(bytes.NewReader(b), Keys{Image: "filepath", Caption: "title", Label: "label", Action: "action"})
		if err != nil {
			return
		}
		for _, r := range rows {
			if r.Line < 1 {
				t.Fatalf("row with line %d", r.Line)
			}
			if r.HasInline && r.Action != "" {
				t.Fatalf("row with both an inline and a file action")
			}
		}
	})
}

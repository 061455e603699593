package wds

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/npy"
	"github.com/infonce/infonce/dataset/shardidx"
)

func TestExpand(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"a.tar", []string{"a.tar"}},
		{"s/{0..2}.tar", []string{"s/0.tar", "s/1.tar", "s/2.tar"}},
		{"s/{000008..000011}.tar", []string{"s/000008.tar", "s/000009.tar", "s/000010.tar", "s/000011.tar"}},
		{"{2..0}", []string{"2", "1", "0"}},
		{"{8..010}", []string{"008", "009", "010"}},
		{"{a,b}-{0..1}", []string{"a-0", "a-1", "b-0", "b-1"}},
		{"x{a,{1..2}}y", []string{"xay", "x1y", "x2y"}},
		{"{,b}", []string{"", "b"}},
	} {
		got, err := Expand(c.in)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("Expand(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"{0..", "a}", "{a}", "{x..y}", "{-1..2}", "{0..99999999}", "}{"} {
		if got, err := Expand(bad); err == nil {
			t.Errorf("Expand(%q) = %q, want an error", bad, got)
		}
	}
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"shards/{000000..000099}.tar", "{a,b}{c,d}", "{1..3}", "x{a,{0..2}}", "{", "}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := Expand(s)
		if err != nil {
			return
		}
		if len(out) == 0 || len(out) > MaxExpansion {
			t.Fatalf("%q expands to %d names", s, len(out))
		}
		if !strings.ContainsAny(s, "{}") && (len(out) != 1 || out[0] != s) {
			t.Fatalf("%q without braces expands to %q", s, out)
		}
	})
}

func pngOf(t testing.TB, w, h int, c color.Color) []byte {
	im := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range w * h {
		im.Set(i%w, i/w, c)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, im); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func jpegOf(t testing.TB, w, h int) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h)), nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func npyOf(t testing.TB, v ...float32) []byte {
	var buf bytes.Buffer
	if err := npy.Write(&buf, []int{len(v)}, v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type member struct {
	name string
	data []byte
}

func tarOf(t testing.TB, members ...member) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		if err := tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(m.data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func write(t testing.TB, path string, b []byte) {
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
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

func TestSource(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "s-000.tar"), tarOf(t,
		member{"a/000.jpg", jpegOf(t, 8, 6)},
		member{"a/000.txt", []byte(" a grey square \n")},
		member{"a/000.cls", []byte("3")},
		member{"a/001.png", pngOf(t, 4, 4, color.RGBA{255, 0, 0, 255})},
		member{"a/001.json", []byte(`{"caption": "from json", "task": 2, "episode": 7, "step": 1, "episode_len": 5}`)},
		member{"a/001.cls", []byte("1")},
		member{"a/001.action.npy", npyOf(t, 0.5, -1)},
		member{"a/001.state.npy", npyOf(t, 9)},
		member{"a/001.xyz", []byte("ignored")},
	))
	write(t, filepath.Join(dir, "s-001.tar"), tarOf(t,
		member{"002.png", pngOf(t, 2, 3, color.White)},
		member{"002.txt", []byte("white")},
		member{"002.cls", []byte("0")},
		member{"003.png", pngOf(t, 2, 2, color.Black)}, // no caption, no class
		member{"004.png", []byte("not a png")},
		member{"004.txt", []byte("broken")},
		member{"004.cls", []byte("1")},
		member{"README", []byte("a member without a sample")},
		member{"005.txt", []byte("no image")},
		member{"005.cls", []byte("x")},
	))
	src, err := Open(filepath.Join(dir, "s-{000..001}.tar"), dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if src.Len() != 7 || src.Shards() != 2 {
		t.Fatalf("%d samples in %d shards, want 7 in 2", src.Len(), src.Shards())
	}
	if want := []dataset.Field{dataset.FieldImage, dataset.FieldText, dataset.FieldLabel}; !slices.Equal(src.Fields(), want) {
		t.Fatalf("fields %v, want %v", src.Fields(), want)
	}
	ctx := context.Background()
	var s dataset.Sample
	if err := src.Sample(ctx, 0, &s); err != nil {
		t.Fatal(err)
	}
	if s.Text != "a grey square" || s.Label != 3 || s.Image.W != 8 || s.Image.H != 6 || s.Image.C != 1 {
		t.Fatalf("sample 0: %q label %d image %d×%d×%d", s.Text, s.Label, s.Image.W, s.Image.H, s.Image.C)
	}
	if err := src.Sample(ctx, 1, &s); err != nil {
		t.Fatal(err)
	}
	if s.Text != "from json" || s.Label != 1 || s.Task != 2 || s.Episode != 7 || s.Step != 1 || s.EpisodeLen != 5 ||
		!slices.Equal(s.Action, []float32{0.5, -1}) || !slices.Equal(s.ActionShape, []int{2}) || !slices.Equal(s.State, []float32{9}) ||
		!slices.Equal(s.Image.Pix[:3], []byte{255, 0, 0}) {
		t.Fatalf("sample 1: %+v", s)
	}
	if !strings.HasSuffix(s.Key, "s-000.tar:a/001") {
		t.Errorf("key %q", s.Key)
	}
	want := []string{"", "", "", "missing-text", "corrupt-image", "unknown-member", "bad-label"}
	for i, w := range want {
		if got := reason(src.Sample(ctx, i, &s)); got != w {
			t.Errorf("sample %d: %q, want %q", i, got, w)
		}
	}
	if err := src.Sample(ctx, 7, &s); err == nil || errors.Is(err, dataset.ErrBadSample) {
		t.Errorf("sample out of range: %v", err)
	}
}

func TestIndexReused(t *testing.T) {
	dir := t.TempDir()
	shard := filepath.Join(dir, "one.tar")
	b := tarOf(t, member{"0.txt", []byte("zero")}, member{"1.txt", []byte("one")})
	write(t, shard, b)
	when := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	os.Chtimes(shard, when, when)
	src, err := Open(shard, dataset.OpenOptions{})
	if err != nil || src.Len() != 2 {
		t.Fatalf("open: %v", err)
	}
	if _, err := os.Stat(shard + ".idx"); err != nil {
		t.Fatalf("no index beside the shard: %v", err)
	}
	// Same size and time, other members: the stored index is what is read.
	write(t, shard, tarOf(t, member{"0.txt", []byte("zero")}, member{"0.cls", []byte("1")})[:len(b)])
	os.Chtimes(shard, when, when)
	if src, err = Open(shard, dataset.OpenOptions{}); err != nil || src.Len() != 2 {
		t.Fatalf("reopen with the stored index: %d samples, %v", src.Len(), err)
	}
	// Another time: scanned again (the new tar has one sample).
	os.Chtimes(shard, when.Add(time.Second), when.Add(time.Second))
	if src, err = Open(shard, dataset.OpenOptions{}); err != nil || src.Len() != 1 {
		t.Fatalf("reopen after a change: %d samples, %v", src.Len(), err)
	}
}

func TestTruncated(t *testing.T) {
	dir := t.TempDir()
	b := tarOf(t,
		member{"0.png", pngOf(t, 3, 3, color.White)}, member{"0.txt", []byte("zero")},
		member{"1.png", pngOf(t, 3, 3, color.White)}, member{"1.txt", []byte("one")},
		member{"2.png", pngOf(t, 30, 30, color.White)}, member{"2.txt", []byte("two")},
	)
	// Cut inside the data of 2.png, then inside the header of 2.txt.
	ents, err := ScanTar(bytes.NewReader(b), int64(len(b)))
	if err != nil || len(ents) != 6 {
		t.Fatalf("scan: %v %v", ents, err)
	}
	for _, cut := range []int64{ents[4].Offset + 10, ents[5].Offset - 512 + 100} {
		shard := filepath.Join(dir, "cut.tar")
		write(t, shard, b[:cut])
		os.Remove(shard + ".idx")
		src, err := Open(shard, dataset.OpenOptions{})
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if src.Len() != 3 {
			t.Fatalf("cut at %d: %d samples, want 3", cut, src.Len())
		}
		var s dataset.Sample
		for i := range 2 {
			if err := src.Sample(context.Background(), i, &s); err != nil {
				t.Fatalf("cut at %d, sample %d: %v", cut, i, err)
			}
		}
		if r := reason(src.Sample(context.Background(), 2, &s)); r != "truncated-tar" {
			t.Fatalf("cut at %d, sample 2: %q, want truncated-tar", cut, r)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for name, pattern := range map[string]string{
		"missing":     filepath.Join(dir, "none-{0..1}.tar"),
		"bad pattern": filepath.Join(dir, "{0..1.tar"),
	} {
		if _, err := Open(pattern, dataset.OpenOptions{}); err == nil {
			t.Errorf("%s: opened", name)
		} else if name == "missing" && !strings.Contains(err.Error(), "none-0.tar") {
			t.Errorf("%s: %v does not name the shard", name, err)
		}
	}
	gz := filepath.Join(dir, "c.tar.gz")
	write(t, gz, []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0})
	if _, err := Open(gz, dataset.OpenOptions{}); err == nil || !strings.Contains(err.Error(), "decompress") {
		t.Errorf("gzip shard: %v", err)
	}
	empty := filepath.Join(dir, "empty.tar")
	write(t, empty, tarOf(t))
	if _, err := Open(empty, dataset.OpenOptions{}); err == nil || !strings.Contains(err.Error(), "no member") {
		t.Errorf("empty tar: %v", err)
	}
}

func TestSplitName(t *testing.T) {
	for _, c := range [][3]string{
		{"a/b.c.d", "a/b", "c.d"}, {"x.JPG", "x", "jpg"}, {"d.x/y.txt", "d.x/y", "txt"}, {"plain", "plain", ""},
	} {
		if k, e := SplitName(c[0]); k != c[1] || e != c[2] {
			t.Errorf("SplitName(%q) = %q, %q", c[0], k, e)
		}
	}
}

// FuzzTar scans arbitrary bytes as a tar and checks the grouping: every
// member lies inside the file unless it is marked cut, the samples
// partition the members, and members of one sample share a key.
func FuzzTar(f *testing.F) {
	f.Add(tarOf(f, member{"0.png", []byte("x")}, member{"0.txt", []byte("t")}, member{"1.txt", []byte("u")}))
	good := tarOf(f, member{"a.b.c", bytes.Repeat([]byte("z"), 700)})
	f.Add(good[:600])
	f.Add([]byte{})
	f.Add([]byte("\x1f\x8b")) // a gzip header: refused, not scanned
	f.Fuzz(func(t *testing.T, b []byte) {
		ents, err := ScanTar(bytes.NewReader(b), int64(len(b)))
		if errors.Is(err, ErrCompressed) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range ents {
			if e.N == 0 && (e.Offset < 0 || e.Size < 0 || e.Offset+e.Size > int64(len(b))) {
				t.Fatalf("member %d %+v outside %d bytes", i, e, len(b))
			}
			if e.N != 0 && i != len(ents)-1 {
				t.Fatalf("marked member %d is not the last", i)
			}
		}
		starts := Group(ents)
		if len(ents) > 0 && (len(starts) == 0 || starts[0] != 0) {
			t.Fatalf("groups %v of %d members", starts, len(ents))
		}
		for g, st := range starts {
			end := len(ents)
			if g+1 < len(starts) {
				end = starts[g+1]
			}
			if end <= st {
				t.Fatalf("empty group %d", g)
			}
			k0, _ := SplitName(ents[st].Name)
			for _, e := range ents[st+1 : end] {
				if k, _ := SplitName(e.Name); k != k0 && e.Name != "" {
					t.Fatalf("group %d mixes %q and %q", g, ents[st].Name, e.Name)
				}
			}
		}
		// The index of what was scanned survives encoding.
		ix := &shardidx.Index{Kind: IndexKind, Entries: ents}
		if back, err := shardidx.Decode(shardidx.Encode(ix)); err != nil || len(back.Entries) != len(ents) {
			t.Fatalf("index round trip: %v", err)
		}
	})
}

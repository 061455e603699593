package wds

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/shardidx"
)

// sampleOf is a sample with every field, its pixels and values a function
// of i; odd samples are grey.
func sampleOf(i int) dataset.Sample {
	s := dataset.Sample{Label: -1, Episode: -1, Task: -1}
	c := 3
	if i%2 == 1 {
		c = 1
	}
	h, w := 3+i, 5+2*i
	pix := make([]byte, h*w*c)
	for j := range pix {
		pix[j] = byte(j*7 + i*31)
	}
	s.Image = dataset.Picture{H: h, W: w, C: c, Pix: pix}
	s.Text = strings.Repeat("word ", i+1) + "end"
	s.Label = i % 3
	s.Action = []float32{float32(i), -1.5, 0.25, 3e-8, float32(-i), 1e6}
	s.ActionShape = []int{2, 3}
	s.State = []float32{float32(i) / 7, 2}
	s.Episode, s.Step, s.EpisodeLen, s.Task = int64(i/2), i%2, 2, 4+i
	return s
}

func writeShards(t *testing.T, dir string, n, shardSize int) *Writer {
	t.Helper()
	w, err := NewWriter(dir, WriterOptions{ShardSize: shardSize})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		s := sampleOf(i)
		m, err := Members(&s)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(strings.Repeat("0", 5)+string(rune('0'+i)), m); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWriterRoundTrip(t *testing.T) {
	for _, c := range []struct {
		n, shardSize, shards int
	}{
		{1, 2, 1},
		{5, 2, 3},
		{6, 3, 2},
		{4, 10, 1},
	} {
		dir := t.TempDir()
		w := writeShards(t, dir, c.n, c.shardSize)
		if got := w.Shards(); len(got) != c.shards {
			t.Fatalf("%d samples by %d: shards %q, want %d", c.n, c.shardSize, got, c.shards)
		}
		if w.Samples() != c.n {
			t.Errorf("Samples() = %d, want %d", w.Samples(), c.n)
		}
		// The stored index is the one the reader would build.
		for _, p := range w.Shards() {
			b, err := os.ReadFile(p + ".idx")
			if err != nil {
				t.Fatalf("index beside %s: %v", p, err)
			}
			ix, err := shardidx.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			fi, _ := f.Stat()
			scanned, err := ScanTar(f, fi.Size())
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if ix.Kind != IndexKind || ix.Size != fi.Size() || ix.ModTime != fi.ModTime().UnixNano() || !slices.Equal(ix.Entries, scanned) {
				t.Errorf("%s: stored index %+v differs from the scan %+v (size %d)", p, ix, scanned, fi.Size())
			}
		}
		src, err := Open(w.Pattern(), dataset.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if src.Len() != c.n || src.Shards() != c.shards {
			t.Fatalf("%s: %d samples in %d shards, want %d in %d", w.Pattern(), src.Len(), src.Shards(), c.n, c.shards)
		}
		var got dataset.Sample
		for i := range c.n {
			want := sampleOf(i)
			if err := src.Sample(context.Background(), i, &got); err != nil {
				t.Fatal(err)
			}
			if !samePicture(got.Image, want.Image) {
				t.Errorf("sample %d: image %d×%d×%d differs from %d×%d×%d", i, got.Image.H, got.Image.W, got.Image.C, want.Image.H, want.Image.W, want.Image.C)
			}
			if got.Text != want.Text || got.Label != want.Label || got.Episode != want.Episode || got.Step != want.Step ||
				got.EpisodeLen != want.EpisodeLen || got.Task != want.Task {
				t.Errorf("sample %d: %q %d ep %d/%d/%d task %d; want %q %d ep %d/%d/%d task %d", i,
					got.Text, got.Label, got.Episode, got.Step, got.EpisodeLen, got.Task,
					want.Text, want.Label, want.Episode, want.Step, want.EpisodeLen, want.Task)
			}
			if !slices.Equal(got.Action, want.Action) || !slices.Equal(got.ActionShape, want.ActionShape) || !slices.Equal(got.State, want.State) {
				t.Errorf("sample %d: action %v %v state %v; want %v %v %v", i, got.Action, got.ActionShape, got.State, want.Action, want.ActionShape, want.State)
			}
		}
	}
}

func samePicture(a, b dataset.Picture) bool {
	return a.H == b.H && a.W == b.W && a.C == b.C && bytes.Equal(a.Pix, b.Pix)
}

// Packing the same samples twice gives the same bytes.
func TestWriterDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	wa, wb := writeShards(t, a, 3, 2), writeShards(t, b, 3, 2)
	for i, p := range wa.Shards() {
		x, err1 := os.ReadFile(p)
		y, err2 := os.ReadFile(wb.Shards()[i])
		if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
			t.Errorf("shard %d differs between two writes of the same samples (%v, %v)", i, err1, err2)
		}
	}
	if wa.Pattern() != filepath.Join(a, "{000000..000001}.tar") {
		t.Errorf("Pattern() = %q", wa.Pattern())
	}
	// No temporary file is left.
	ents, _ := os.ReadDir(a)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left over %s", e.Name())
		}
	}
}

func TestMembersOfSparseSample(t *testing.T) {
	s := dataset.Sample{Label: -1, Episode: -1, Task: -1, Text: "only text"}
	m, err := Members(&s)
	if err != nil || len(m) != 1 || m[0].Ext != "txt" {
		t.Fatalf("Members = %v, %v; want one txt member", m, err)
	}
	s = dataset.Sample{Label: -1, Episode: -1, Task: 2}
	m, err = Members(&s)
	if err != nil || len(m) != 1 || m[0].Ext != "json" || string(m[0].Data) != `{"task":2}` {
		t.Fatalf("Members = %v, %v; want one json member with the task", m, err)
	}
	s = dataset.Sample{Label: -1, Episode: -1, Task: -1, Action: []float32{1, 2, 3}}
	m, err = Members(&s)
	if err != nil || len(m) != 1 || m[0].Ext != "npy" {
		t.Fatalf("Members = %v, %v; want one npy member", m, err)
	}
	s = dataset.Sample{Label: -1, Episode: -1, Task: -1, Image: dataset.Picture{H: 2, W: 2, C: 3, Pix: []byte{1}}}
	if _, err := Members(&s); err == nil {
		t.Error("a picture whose size disagrees with its pixels was encoded")
	}
}

func TestWriterErrors(t *testing.T) {
	if _, err := NewWriter(t.TempDir(), WriterOptions{ShardSize: -1}); err == nil {
		t.Error("negative shard size accepted")
	}
	w, err := NewWriter(t.TempDir(), WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"", "a.b", "dir/x.y"} {
		if err := w.Write(key, []Member{{"txt", []byte("x")}}); err == nil {
			t.Errorf("key %q accepted", key)
		}
	}
	if err := w.Write("k", nil); err == nil {
		t.Error("a sample without members accepted")
	}
	if err := w.Close(); err != nil || len(w.Shards()) != 0 || w.Pattern() != "" {
		t.Errorf("Close of an empty writer: %v, shards %q, pattern %q", err, w.Shards(), w.Pattern())
	}
}

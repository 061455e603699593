package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/npy"
	"github.com/infonce/infonce/dataset/rlds"
	"github.com/infonce/infonce/dataset/shardidx"
	"github.com/infonce/infonce/dataset/tfrecord"
	"github.com/infonce/infonce/dataset/wds"
	"github.com/infonce/infonce/rundir"
)

// runDataCmd runs 'infonce data ARGS…' and returns its exit status and
// output.
func runDataCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(context.Background(), append([]string{"data"}, args...), &o, &e)
	return code, o.String(), e.String()
}

// dataTestImage is a w×h image whose pixels are a function of seed:
// grey, opaque RGB, or RGB with a varying alpha.
func dataTestImage(w, h, seed int, kind string) image.Image {
	r := image.Rect(0, 0, w, h)
	var im dataSettable
	switch kind {
	case "grey":
		im = image.NewGray(r)
	default:
		im = image.NewNRGBA(r)
	}
	for y := range h {
		for x := range w {
			v := uint8(x*37 + y*11 + seed*53)
			switch kind {
			case "grey":
				im.Set(x, y, color.Gray{v})
			case "alpha":
				im.Set(x, y, color.NRGBA{v, v / 2, 255 - v, uint8(x * 255 / max(w-1, 1))})
			default:
				im.Set(x, y, color.NRGBA{v, uint8(y * 20), 255 - v, 255})
			}
		}
	}
	return im
}

type dataSettable interface {
	image.Image
	Set(x, y int, c color.Color)
}

func dataWriteFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func dataPNG(t *testing.T, im image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, im); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func dataJPEG(t *testing.T, im image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, im, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// corruptPNG is the start of a PNG, cut in its header.
var corruptPNG = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00")

// dataFolder writes an image folder of two classes: an RGB PNG, a JPEG,
// a grey PNG, a PNG with transparency and, when bad, a corrupt PNG.
func dataFolder(t *testing.T, bad bool) string {
	dir := t.TempDir()
	dataWriteFile(t, filepath.Join(dir, "cat", "a.png"), dataPNG(t, dataTestImage(9, 7, 1, "rgb")))
	dataWriteFile(t, filepath.Join(dir, "cat", "b.jpg"), dataJPEG(t, dataTestImage(16, 12, 2, "rgb")))
	dataWriteFile(t, filepath.Join(dir, "big_dog", "c.png"), dataPNG(t, dataTestImage(5, 11, 3, "grey")))
	dataWriteFile(t, filepath.Join(dir, "big_dog", "d.png"), dataPNG(t, dataTestImage(8, 8, 4, "alpha")))
	if bad {
		dataWriteFile(t, filepath.Join(dir, "cat", "c_bad.png"), corruptPNG)
	}
	return dir
}

// dataCSV writes a tab-separated manifest with an image, a caption, a
// class name and a .npy action chunk of shape [2, 3] per row, and three
// bad rows: a corrupt image, an empty caption, an action that is not a
// .npy.
func dataCSV(t *testing.T) string {
	dir := t.TempDir()
	var m strings.Builder
	m.WriteString("filepath\ttitle\tlabel\taction\n")
	for i := range 5 {
		img := fmt.Sprintf("img/%d.png", i)
		dataWriteFile(t, filepath.Join(dir, img), dataPNG(t, dataTestImage(6+i, 4+i, i, []string{"rgb", "grey"}[i%2])))
		act := fmt.Sprintf("act/%d.npy", i)
		var b bytes.Buffer
		if err := npy.Write(&b, []int{2, 3}, []float32{float32(i), -1, 0.5, 1e-3, float32(i) * 2, 7}); err != nil {
			t.Fatal(err)
		}
		dataWriteFile(t, filepath.Join(dir, act), b.Bytes())
		fmt.Fprintf(&m, "%s\ta photo number %d\t%s\t%s\n", img, i, []string{"red", "blue"}[i%2], act)
		switch i {
		case 1:
			dataWriteFile(t, filepath.Join(dir, "img/bad.png"), corruptPNG)
			fmt.Fprintf(&m, "img/bad.png\tbroken\tred\t%s\n", act)
		case 2:
			fmt.Fprintf(&m, "%s\t \tred\t%s\n", img, act)
		case 3:
			dataWriteFile(t, filepath.Join(dir, "act/bad.npy"), []byte("not an array"))
			fmt.Fprintf(&m, "%s\tbad action\tblue\tact/bad.npy\n", img)
		}
	}
	file := filepath.Join(dir, "m.tsv")
	dataWriteFile(t, file, []byte(m.String()))
	return file
}

// dataGood reads every sample of spec and returns the good ones, in
// order, and the bad ones counted by reason.
func dataGood(t *testing.T, spec string, opts dataset.OpenOptions) ([]dataset.Sample, map[string]int) {
	t.Helper()
	src, err := dataset.Open(spec, opts)
	if err != nil {
		t.Fatal(err)
	}
	var good []dataset.Sample
	bad := map[string]int{}
	for i := range src.Len() {
		var s dataset.Sample
		err := src.Sample(context.Background(), i, &s)
		if r := dataset.Reason(err); r != "" {
			bad[r]++
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		good = append(good, s)
	}
	return good, bad
}

func dataShardPattern(dir string, shards int) string {
	return fmt.Sprintf("wds:%s/{%06d..%06d}.tar", dir, 0, shards-1)
}

// dataRLDS writes an RLDS folder of two shards holding episodes of 3, 2
// and 4 steps (JPEG images, an action of 2, a state of 3, an
// instruction); step 1 of episode 1 has a corrupt image.
func dataRLDS(t *testing.T) string {
	dir := t.TempDir()
	l := rlds.Layout{ImageH: 12, ImageW: 16, ImageC: 3, ImageFormat: "jpeg", Action: 2, State: 3, Instruction: true}
	dataWriteFile(t, filepath.Join(dir, "features.json"), rlds.FeaturesJSON(l))
	e := 0
	for si, lens := range [][]int{{3, 2}, {4}} {
		var buf bytes.Buffer
		w := tfrecord.NewWriter(&buf)
		for _, T := range lens {
			var steps []rlds.Step
			for st := range T {
				img := dataJPEG(t, dataTestImage(16, 12, 10*e+st, "rgb"))
				if e == 1 && st == 1 {
					img = corruptPNG
				}
				steps = append(steps, rlds.Step{Image: img, Instruction: fmt.Sprintf("pick up block %d", e),
					Action: []float32{float32(e) / 3, float32(st)}, State: []float32{float32(st), 0.5, -1}})
			}
			if err := w.Write(rlds.EpisodeExample(steps).Marshal()); err != nil {
				t.Fatal(err)
			}
			e++
		}
		dataWriteFile(t, filepath.Join(dir, fmt.Sprintf("toy-train.tfrecord-%05d-of-%05d", si, 2)), buf.Bytes())
	}
	return dir
}

func TestDataPack(t *testing.T) {
	csvFile := dataCSV(t)
	for _, c := range []struct {
		name  string
		spec  string
		flags []string
		opts  dataset.OpenOptions
		good  int
		bad   map[string]int
	}{
		{"folder", "folder:" + dataFolder(t, true), nil, dataset.OpenOptions{}, 4, map[string]int{"corrupt-image": 1}},
		{"csv", "csv:" + csvFile, []string{"--label-key", "label", "--action-key", "action"},
			dataset.OpenOptions{LabelKey: "label", ActionKey: "action"}, 5,
			map[string]int{"corrupt-image": 1, "missing-text": 1, "bad-npy": 1}},
		{"rlds", "rlds:" + dataRLDS(t), nil, dataset.OpenOptions{}, 8, map[string]int{"corrupt-image": 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "shards")
			args := append([]string{"pack", "--from", c.spec, "--out", out, "--shard-size", "2"}, c.flags...)
			code, stdout, stderr := runDataCmd(t, args...)
			if code != 0 {
				t.Fatalf("pack exited %d: %s%s", code, stdout, stderr)
			}
			want, wantBad := dataGood(t, c.spec, c.opts)
			if len(want) != c.good || !mapsEqual(wantBad, c.bad) {
				t.Fatalf("the source has %d good samples and bad %v; the test expects %d and %v", len(want), wantBad, c.good, c.bad)
			}
			shards := (len(want) + 1) / 2
			pattern := dataShardPattern(out, shards)
			if !strings.Contains(stdout, fmt.Sprintf("packed %d of %d samples", c.good, c.good+len(c.bad))) ||
				!strings.Contains(stdout, "'"+pattern+"'") {
				t.Errorf("pack output lacks the count or the pattern %s:\n%s", pattern, stdout)
			}
			for reason, n := range c.bad {
				if !strings.Contains(stdout, fmt.Sprintf("%-20s %8d", reason, n)) {
					t.Errorf("pack output lacks %d × %s:\n%s", n, reason, stdout)
				}
			}
			for i := range shards {
				if _, err := os.Stat(filepath.Join(out, wds.ShardName(i)+".idx")); err != nil {
					t.Errorf("no index beside shard %d: %v", i, err)
				}
			}
			got, gotBad := dataGood(t, pattern, dataset.OpenOptions{})
			if len(gotBad) > 0 || len(got) != len(want) {
				t.Fatalf("the shards hold %d good samples and bad %v, want %d and none", len(got), gotBad, len(want))
			}
			for i := range want {
				g, w := got[i], want[i]
				if g.Image.H != w.Image.H || g.Image.W != w.Image.W || g.Image.C != w.Image.C || !bytes.Equal(g.Image.Pix, w.Image.Pix) {
					t.Errorf("sample %d (%s): image %d×%d×%d differs from the source's %d×%d×%d", i, w.Key,
						g.Image.W, g.Image.H, g.Image.C, w.Image.W, w.Image.H, w.Image.C)
				}
				if g.Text != w.Text || g.Label != w.Label || g.Episode != w.Episode || g.Step != w.Step || g.EpisodeLen != w.EpisodeLen || g.Task != w.Task ||
					!slices.Equal(g.Action, w.Action) || !slices.Equal(g.ActionShape, w.ActionShape) || !slices.Equal(g.State, w.State) {
					t.Errorf("sample %d (%s): %q label %d episode %d/%d/%d task %d action %v%v state %v; the source's %q label %d episode %d/%d/%d task %d action %v%v state %v", i, w.Key,
						g.Text, g.Label, g.Episode, g.Step, g.EpisodeLen, g.Task, g.Action, g.ActionShape, g.State,
						w.Text, w.Label, w.Episode, w.Step, w.EpisodeLen, w.Task, w.Action, w.ActionShape, w.State)
				}
				// Keys follow the source's indexes, so the shards keep its order.
				if !strings.HasSuffix(g.Key, fmt.Sprintf(":%06d", w.Index)) {
					t.Errorf("sample %d: key %q, want the source index %06d", i, g.Key, w.Index)
				}
			}

			// A second pack into the same folder needs --overwrite, and
			// gives the same bytes.
			first, err := os.ReadFile(filepath.Join(out, wds.ShardName(0)))
			if err != nil {
				t.Fatal(err)
			}
			if code, _, stderr := runDataCmd(t, args...); code != 1 || !strings.Contains(stderr, "--overwrite") {
				t.Errorf("pack into a folder of shards exited %d: %s", code, stderr)
			}
			if code, stdout, stderr := runDataCmd(t, append(args, "--overwrite", "--workers", "1")...); code != 0 {
				t.Fatalf("pack --overwrite exited %d: %s%s", code, stdout, stderr)
			}
			again, err := os.ReadFile(filepath.Join(out, wds.ShardName(0)))
			if err != nil || !bytes.Equal(first, again) {
				t.Errorf("packing again with one goroutine changed shard 0 (%v)", err)
			}
		})
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestDataPackErrors(t *testing.T) {
	allBad := t.TempDir()
	dataWriteFile(t, filepath.Join(allBad, "x", "a.png"), corruptPNG)
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no source", []string{"pack", "--out", t.TempDir()}, 2, "usage"},
		{"no out", []string{"pack", "--from", "synthetic:4"}, 2, "usage"},
		{"positional", []string{"pack", "synthetic:4", "--out", t.TempDir()}, 2, "--from"},
		{"shard size", []string{"pack", "--from", "synthetic:4", "--out", t.TempDir(), "--shard-size", "0"}, 2, "shard-size"},
		{"unknown source", []string{"pack", "--from", "nothing:x", "--out", t.TempDir()}, 1, "unknown source"},
		{"missing folder", []string{"pack", "--from", "folder:" + filepath.Join(allBad, "none"), "--out", t.TempDir()}, 1, "no such file"},
		{"nothing usable", []string{"pack", "--from", "folder:" + allBad, "--out", filepath.Join(t.TempDir(), "o")}, 1, "none of its 1 samples"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runDataCmd(t, c.args...)
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, want %d with %q: %s%s", code, c.code, c.want, stdout, stderr)
			}
		})
	}
}

// dataEpisodeShards writes n samples of robot episodes into shards of 40:
// episode i/10 and step i%10, task i%3, the action (i, −2i), a state, a
// caption of i%4+1 words, images of 6×4 (RGB) or 3×5 (grey, i%5 == 0);
// sample 50 has a corrupt PNG instead.
func dataEpisodeShards(t *testing.T, n int) string {
	dir := t.TempDir()
	w, err := wds.NewWriter(dir, wds.WriterOptions{ShardSize: 40})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		s := dataset.Sample{Label: -1, Episode: int64(i / 10), Step: i % 10, EpisodeLen: 10, Task: i % 3}
		if i%5 == 0 {
			s.Image = dataset.Picture{H: 5, W: 3, C: 1, Pix: make([]byte, 15)}
		} else {
			s.Image = dataset.Picture{H: 4, W: 6, C: 3, Pix: make([]byte, 72)}
		}
		for j := range s.Image.Pix {
			s.Image.Pix[j] = byte(j*29 + i*7)
		}
		s.Text = strings.TrimSpace(strings.Repeat("go ", i%4+1))
		s.Action, s.ActionShape = []float32{float32(i), float32(-2 * i)}, []int{2}
		s.State = []float32{1, float32(i)}
		m, err := wds.Members(&s)
		if err != nil {
			t.Fatal(err)
		}
		if i == 50 {
			m[0].Data = corruptPNG
		}
		if err := w.Write(fmt.Sprintf("%06d", i), m); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return "wds:" + w.Pattern()
}

func TestDataInspect(t *testing.T) {
	spec := dataEpisodeShards(t, 101)
	sheet := filepath.Join(t.TempDir(), "sheets", "sheet.png")
	code, stdout, stderr := runDataCmd(t, "inspect", spec, "--json", "--contact-sheet", sheet)
	if code != 0 {
		t.Fatalf("inspect exited %d: %s%s", code, stdout, stderr)
	}
	var r dataReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v in %s", err, stdout)
	}
	if r.Samples != 101 || r.Read != 101 || r.Good != 100 || r.Bad != 1 || r.Episodes != 11 || r.Tasks != 3 || len(r.Classes) != 0 {
		t.Errorf("counts %+v", r)
	}
	if len(r.Reasons) != 1 || r.Reasons[0].Reason != "corrupt-image" || r.Reasons[0].Count != 1 ||
		len(r.Reasons[0].Keys) != 1 || !strings.HasSuffix(r.Reasons[0].Keys[0], ":000050") {
		t.Errorf("bad samples %+v", r.Reasons)
	}
	// 20 grey 3×5 images (i%5 == 0 but 50), 80 RGB 6×4.
	wantImages := dataImages{Count: 100, Smallest: dataSize{3, 5, 1}, Largest: dataSize{6, 4, 3}, Common: dataSize{6, 4, 3}, CommonCount: 80, Sizes: 2}
	if r.Images == nil || *r.Images != wantImages {
		t.Errorf("images %+v, want %+v", r.Images, wantImages)
	}
	// Captions "go", "go go", … (2, 5, 8, 11 characters), 25 of each
	// length but one "go go go" (i = 50) missing: the medians are those
	// of 25 ones, 25 twos, 24 threes and 25 fours.
	wantCaptions := dataCaptions{Count: 100, Chars: dataSpread{2, 5, 11}, Words: dataSpread{1, 2, 4}}
	if r.Captions == nil || *r.Captions != wantCaptions {
		t.Errorf("captions %+v, want %+v", r.Captions, wantCaptions)
	}
	// Actions (i, −2i) for i in 0…100 but 50: dimension 0 has mean 50,
	// p1 at rank 0.99 (0.99) and p99 at rank 98.01 (99 + 0.01).
	var ss float64
	for i := range 101 {
		if i != 50 {
			ss += float64((i - 50) * (i - 50))
		}
	}
	std := math.Sqrt(ss / 100)
	if r.Actions == nil || r.Actions.Count != 100 || !slices.Equal(r.Actions.Shape, []int{2}) || len(r.Actions.Dims) != 2 {
		t.Fatalf("actions %+v", r.Actions)
	}
	for d, want := range []dataDim{
		{Min: 0, Max: 100, Mean: 50, Std: std, P1: 0.99, P99: 99.01},
		{Min: -200, Max: 0, Mean: -100, Std: 2 * std, P1: -198.02, P99: -1.98},
	} {
		got := r.Actions.Dims[d]
		for _, v := range [][3]float64{{got.Min, want.Min}, {got.Max, want.Max}, {got.Mean, want.Mean}, {got.Std, want.Std}, {got.P1, want.P1}, {got.P99, want.P99}} {
			if math.Abs(v[0]-v[1]) > 1e-9*max(1, math.Abs(v[1])) {
				t.Errorf("action dimension %d: %+v, want %+v", d, got, want)
				break
			}
		}
	}
	if r.States == nil || r.States.Count != 100 || len(r.States.Dims) != 2 || r.States.Dims[0].Std != 0 || r.States.Dims[1].Max != 100 {
		t.Errorf("states %+v", r.States)
	}

	// The contact sheet: 8×8 cells over the 101 samples, the cell of
	// sample 50 (k = 32, ⌊32·101/64⌋ = 50) bad.
	f, err := os.Open(sheet)
	if err != nil {
		t.Fatal(err)
	}
	im, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if b := im.Bounds(); b.Dx() != 8*dataCellW || b.Dy() != 8*dataCellH {
		t.Fatalf("contact sheet of %v, want %d×%d", b, 8*dataCellW, 8*dataCellH)
	}
	for k := range 64 {
		x0, y0 := (k%8)*dataCellW+dataCellPad, (k/8)*dataCellH+dataCellPad
		thumb := image.Rect(x0, y0, x0+dataThumbSide, y0+dataThumbSide)
		text := image.Rect(x0, thumb.Max.Y+dataCellPad, x0+dataThumbSide, thumb.Max.Y+dataCellPad+2*dataLineHeight)
		if k == 32 {
			if c := color.RGBAModel.Convert(im.At(thumb.Min.X+60, thumb.Min.Y+60)); c != dataSheetBad {
				t.Errorf("cell of the bad sample is %v, want %v", c, dataSheetBad)
			}
		} else if n := dataColours(im, thumb); n < 3 {
			t.Errorf("thumbnail %d (sample %d) has %d colours: blank", k, dataSheetIndex(k, 101), n)
		}
		if n := dataColours(im, text); n < 2 {
			t.Errorf("no text under thumbnail %d", k)
		}
	}

	// The text report says the same.
	code, stdout, stderr = runDataCmd(t, "inspect", spec)
	if code != 0 {
		t.Fatalf("inspect exited %d: %s", code, stderr)
	}
	for _, want := range []string{"101: 100 good, 1 bad", "episodes  11", "tasks     3", "smallest 3×5×1, largest 6×4×3, most common 6×4×3 (80 images)",
		"characters min 2 median 5 max 11; words min 1 median 2 max 4", "actions   100 of shape [2]", "corrupt-image", "000050"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, stdout)
		}
	}

	// The report does not depend on the number of goroutines, and
	// --limit reads a prefix.
	_, one, _ := runDataCmd(t, "inspect", "--workers", "1", spec, "--json")
	_, three, _ := runDataCmd(t, "inspect", "--workers", "3", spec, "--json")
	if one != three {
		t.Errorf("the report with one goroutine differs from the one with three:\n%s\n%s", one, three)
	}
	_, lim, _ := runDataCmd(t, "inspect", "--limit", "10", spec, "--json")
	var rl dataReport
	if err := json.Unmarshal([]byte(lim), &rl); err != nil || rl.Read != 10 || rl.Samples != 101 || rl.Episodes != 1 || rl.Bad != 0 {
		t.Errorf("--limit 10: %+v, %v", rl, err)
	}
}

// dataColours counts the distinct colours in r of im, up to 16.
func dataColours(im image.Image, r image.Rectangle) int {
	seen := map[color.RGBA]bool{}
	for y := r.Min.Y; y < r.Max.Y && len(seen) < 16; y++ {
		for x := r.Min.X; x < r.Max.X && len(seen) < 16; x++ {
			seen[color.RGBAModel.Convert(im.At(x, y)).(color.RGBA)] = true
		}
	}
	return len(seen)
}

func TestDataInspectClassesAndSheetOfFewSamples(t *testing.T) {
	spec := "folder:" + dataFolder(t, false)
	sheet := filepath.Join(t.TempDir(), "s.png")
	code, stdout, stderr := runDataCmd(t, "inspect", spec, "--contact-sheet", sheet)
	if code != 0 {
		t.Fatalf("inspect exited %d: %s", code, stderr)
	}
	for _, want := range []string{"classes   2", "big dog", "cat", "samples   4: 4 good, 0 bad", "contact sheet " + sheet} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	f, err := os.Open(sheet)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	im, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// Four thumbnails, then empty cells.
	for k := range 6 {
		x0, y0 := (k%8)*dataCellW+dataCellPad, (k/8)*dataCellH+dataCellPad
		n := dataColours(im, image.Rect(x0, y0, x0+dataThumbSide, y0+dataThumbSide))
		if (k < 4) != (n > 2) {
			t.Errorf("cell %d has %d colours", k, n)
		}
	}
}

// dataTruncated packs a few samples into one shard and cuts it in the
// middle of its last member.
func dataTruncated(t *testing.T) string {
	out := t.TempDir()
	if code, stdout, stderr := runDataCmd(t, "pack", "--from", "synthetic:6", "--out", out, "--overwrite"); code != 0 {
		t.Fatalf("pack exited %d: %s%s", code, stdout, stderr)
	}
	shard := filepath.Join(out, wds.ShardName(0))
	b, err := os.ReadFile(shard + ".idx")
	if err != nil {
		t.Fatal(err)
	}
	ix, err := shardidx.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	last := ix.Entries[len(ix.Entries)-1]
	if err := os.Truncate(shard, last.Offset+last.Size/2); err != nil {
		t.Fatal(err)
	}
	return "wds:" + shard
}

func TestDataVerify(t *testing.T) {
	good := "folder:" + dataFolder(t, false)
	bad := "folder:" + dataFolder(t, true)
	truncated := dataTruncated(t)
	csvSpec := "csv:" + dataCSV(t)
	for _, c := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"good", []string{good}, 0, []string{"decoded 4 of 4 samples", "4 good, 0 bad"}},
		{"flags after", []string{good, "--workers", "1"}, 0, []string{"4 good, 0 bad"}},
		{"corrupt image", []string{bad}, 1, []string{"4 good, 1 bad", "corrupt-image", "c_bad.png", "1 of 5 samples are bad"}},
		{"truncated tar", []string{truncated}, 1, []string{"5 good, 1 bad", "truncated-tar", "000005"}},
		{"csv", []string{csvSpec, "--label-key", "label", "--action-key", "action"}, 1, []string{"corrupt-image", "missing-text", "bad-npy", "3 of 8 samples are bad"}},
		{"synthetic", []string{"synthetic:300"}, 0, []string{"300 good, 0 bad"}},
		{"missing folder", []string{"folder:" + filepath.Join(t.TempDir(), "none")}, 1, []string{"no such file"}},
		{"no source", nil, 2, []string{"usage"}},
		{"two sources", []string{good, good}, 2, []string{"usage"}},
		{"bad flag", []string{good, "--nope"}, 2, []string{"nope"}},
		{"bad workers", []string{good, "--workers", "0"}, 2, []string{"--workers"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runDataCmd(t, append([]string{"verify"}, c.args...)...)
			if code != c.code {
				t.Errorf("exit %d, want %d: %s%s", code, c.code, stdout, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stdout+stderr, w) {
					t.Errorf("output lacks %q: %s%s", w, stdout, stderr)
				}
			}
		})
	}

	// --json: the same counts, machine-readable.
	code, stdout, _ := runDataCmd(t, "verify", truncated, "--json")
	var r dataVerifyReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || code != 1 || r.Read != 6 || r.Good != 5 || r.Bad != 1 ||
		len(r.Reasons) != 1 || r.Reasons[0].Reason != "truncated-tar" {
		t.Errorf("verify --json exited %d: %+v %v", code, r, err)
	}
}

func TestDataCommandLine(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"nope"}, 2},
		{[]string{"help"}, 0},
		{[]string{"inspect", "-h"}, 0},
		{[]string{"inspect", "synthetic:3", "--limit", "-1"}, 2},
		{[]string{"inspect", "synthetic:3", "--limit", "2"}, 0},
	} {
		if code, stdout, stderr := runDataCmd(t, c.args...); code != c.code {
			t.Errorf("data %q exited %d, want %d: %s%s", c.args, code, c.code, stdout, stderr)
		}
	}
}

func TestDataPercentileAndSpread(t *testing.T) {
	for _, c := range []struct {
		v    []float64
		p    float64
		want float64
	}{
		{[]float64{5}, 1, 5},
		{[]float64{5}, 99, 5},
		{[]float64{0, 10}, 50, 5},
		{[]float64{0, 10}, 99, 9.9},
		{[]float64{1, 2, 3, 4, 5}, 0, 1},
		{[]float64{1, 2, 3, 4, 5}, 100, 5},
		{[]float64{1, 2, 3, 4, 5}, 25, 2},
		{[]float64{1, 2, 3, 4, 5}, 1, 1.04},
	} {
		if got := dataPercentile(c.v, c.p); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("percentile %g of %v = %g, want %g", c.p, c.v, got, c.want)
		}
	}
	for _, c := range []struct {
		v    []int
		want dataSpread
	}{
		{[]int{7}, dataSpread{7, 7, 7}},
		{[]int{3, 1}, dataSpread{1, 2, 3}},
		{[]int{9, 1, 4}, dataSpread{1, 4, 9}},
		{[]int{4, 1, 2, 8}, dataSpread{1, 3, 8}},
	} {
		if got := dataSpreadOf(slices.Clone(c.v)); got != c.want {
			t.Errorf("spread of %v = %+v, want %+v", c.v, got, c.want)
		}
	}
	d := dataDimOf([]float64{2, 4, 4, 4, 5, 5, 7, 9})
	if d.Mean != 5 || d.Std != 2 || d.Min != 2 || d.Max != 9 {
		t.Errorf("dim %+v, want mean 5 and standard deviation 2", d)
	}
}

func TestDataWrap(t *testing.T) {
	for _, c := range []struct {
		text string
		want []string
	}{
		{"", nil},
		{"a photo of a cat", []string{"a photo of a cat"}},
		{"a photo of a very large dog", []string{"a photo of a very", "large dog"}},
		{"a photo of a very large dog in a garden at night", []string{"a photo of a very", "large dog in a..."}},
		{"abcdefghijklmnopqrstuvwxyz", []string{"abcdefghijklmnopq", "rstuvwxyz"}},
		{"caf\u00e9\ttea", []string{"caf? tea"}},
	} {
		if got := dataWrap(c.text, 17, 2); !slices.Equal(got, c.want) {
			t.Errorf("dataWrap(%q) = %q, want %q", c.text, got, c.want)
		}
	}
}

// The statistics take the samples in order: the first keys of a reason
// are the lowest indexes, and a sample of another action shape is left
// out of the per-dimension statistics.
func TestDataStatsScenario(t *testing.T) {
	var st dataStats
	bad := func(i int) error { return &dataset.BadSample{Reason: "corrupt-image", Key: fmt.Sprintf("k%d", i)} }
	for i := range 9 {
		d := dataInfo{label: i % 2, episode: -1, task: -1, action: []float32{float32(i), 1, 2, float32(i)}, actionShape: []int{2, 2}}
		switch {
		case i%3 == 0:
			d = dataInfo{err: bad(i)}
		case i == 8:
			d.action, d.actionShape = []float32{1, 2, 3}, []int{3}
		}
		st.add(i, d)
	}
	st.add(9, dataInfo{err: fmt.Errorf("disk on fire")})
	src, _ := dataset.Open("synthetic:10", dataset.OpenOptions{})
	r := st.report(src, []string{"even", "odd"})
	if r.Read != 10 || r.Good != 6 || r.Bad != 4 {
		t.Errorf("counts %+v", r)
	}
	wantBad := []dataBad{
		{Reason: "corrupt-image", Count: 3, Keys: []string{"k0", "k3", "k6"}, Example: bad(0).Error()},
		{Reason: dataReadError, Count: 1, Keys: []string{"#9"}, Example: "disk on fire"},
	}
	if fmt.Sprint(r.Reasons) != fmt.Sprint(wantBad) {
		t.Errorf("reasons %+v, want %+v", r.Reasons, wantBad)
	}
	wantClasses := []dataClass{{0, "even", 3}, {1, "odd", 3}}
	if !slices.Equal(r.Classes, wantClasses) {
		t.Errorf("classes %+v, want %+v", r.Classes, wantClasses)
	}
	// Samples 1, 2, 4, 5, 7 give rows (i, 1) and (2, i); 8 is of shape [3].
	if r.Actions == nil || r.Actions.Count != 5 || r.Actions.OtherShape != 1 || r.Actions.Dims[0].Max != 7 || r.Actions.Dims[1].Min != 1 {
		t.Errorf("actions %+v", r.Actions)
	}
}

// A pack stopped by its context keeps its complete shards and leaves no
// partial one.
func TestDataPackCancelled(t *testing.T) {
	out := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var o, e bytes.Buffer
	if code := run(ctx, []string{"data", "pack", "--from", "synthetic:50", "--out", out}, &o, &e); code != 1 || !strings.Contains(e.String(), "context canceled") {
		t.Errorf("cancelled pack exited %d: %s%s", code, o.String(), e.String())
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range ents {
		t.Errorf("cancelled pack left %s", en.Name())
	}
}

// FuzzDataWrap checks that any caption fits its cell. The seed corpus runs
// with go test; go test -fuzz cannot start its workers in this package,
// whose TestMain runs every child of the test binary as infonce.
func FuzzDataWrap(f *testing.F) {
	for _, s := range []string{"", "a photo of a cat", "abcdefghijklmnopqrstuvwxyz0123456789", "caf\u00e9 \x00\n\tx", "  a  b  "} {
		f.Add(s, 17, 2)
	}
	f.Fuzz(func(t *testing.T, s string, width, lines int) {
		if width < 4 || width > 200 || lines < 1 || lines > 8 {
			return
		}
		out := dataWrap(s, width, lines)
		if len(out) > lines {
			t.Fatalf("%q: %d lines, at most %d wanted", s, len(out), lines)
		}
		for _, l := range out {
			if len(l) > width {
				t.Fatalf("%q: line %q longer than %d", s, l, width)
			}
			for _, r := range l {
				if r < 0x20 || r > 0x7e {
					t.Fatalf("%q: line %q holds %q, outside printable ASCII", s, l, r)
				}
			}
		}
		if strings.TrimSpace(s) != "" && len(out) == 0 {
			t.Fatalf("%q: no line", s)
		}
	})
}

// dataFake is a source of six samples: good, without its text, with a NaN
// in its action, with a picture too short for its size, failing without
// a reason, and failing with the reason crc-mismatch.
type dataFake struct{}

func (dataFake) Name() string { return "datatest" }
func (dataFake) Len() int     { return 6 }
func (dataFake) Fields() []dataset.Field {
	return []dataset.Field{dataset.FieldImage, dataset.FieldText, dataset.FieldAction}
}

func (dataFake) Sample(_ context.Context, i int, s *dataset.Sample) error {
	s.Reset()
	s.Index, s.Key = i, fmt.Sprintf("fake/%d", i)
	s.Image = dataset.Picture{H: 2, W: 2, C: 1, Pix: []byte{0, 64, 128, 255}}
	s.Text = "a text"
	s.Action = []float32{1, 2}
	switch i {
	case 1:
		s.Text = ""
	case 2:
		s.Action[1] = float32(math.NaN())
	case 3:
		s.Image.Pix = s.Image.Pix[:3]
	case 4:
		return fmt.Errorf("the disk is gone")
	case 5:
		return &dataset.BadSample{Reason: "crc-mismatch", Key: s.Key}
	}
	return nil
}

func init() {
	dataset.Register("datatest", func(string, dataset.OpenOptions) (dataset.Source, error) { return dataFake{}, nil })
}

func TestDataCheck(t *testing.T) {
	want := []string{"", "missing-text", "non-finite-action", "bad-picture"}
	for i, w := range want {
		var s dataset.Sample
		if err := (dataFake{}).Sample(context.Background(), i, &s); err != nil {
			t.Fatal(err)
		}
		if got := dataset.Reason(dataCheck(dataFake{}, &s)); got != w {
			t.Errorf("sample %d: reason %q, want %q", i, got, w)
		}
	}
	s := dataset.Sample{Label: -1, Episode: -1, Task: -1, Text: "x", State: []float32{float32(math.Inf(1))}}
	if got := dataset.Reason(dataCheck(dataFake{}, &s)); got != "missing-image" {
		t.Errorf("reason %q, want missing-image", got)
	}
	s.Image = dataset.Picture{H: 1, W: 1, C: 1, Pix: []byte{1}}
	s.Action = []float32{0}
	if got := dataset.Reason(dataCheck(dataFake{}, &s)); got != "non-finite-state" {
		t.Errorf("reason %q, want non-finite-state", got)
	}
}

// Every reason of a bad sample is counted; a sample that fails without
// a reason is counted as a read error by verify and inspect, and stops
// pack.
func TestDataFailuresOfASource(t *testing.T) {
	code, stdout, stderr := runDataCmd(t, "verify", "datatest:x", "--json")
	var r dataVerifyReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || code != 1 {
		t.Fatalf("verify exited %d: %v %s%s", code, err, stdout, stderr)
	}
	got := map[string]int{}
	for _, b := range r.Reasons {
		got[b.Reason] = b.Count
	}
	want := map[string]int{"missing-text": 1, "non-finite-action": 1, "bad-picture": 1, dataReadError: 1, "crc-mismatch": 1}
	if r.Good != 1 || r.Bad != 5 || !mapsEqual(got, want) {
		t.Errorf("verify: %d good, %d bad, %v; want 1, 5, %v", r.Good, r.Bad, got, want)
	}
	code, stdout, stderr = runDataCmd(t, "inspect", "datatest:x", "--contact-sheet", filepath.Join(t.TempDir(), "s.png"))
	if code != 0 || !strings.Contains(stdout, "1 good, 5 bad") || !strings.Contains(stdout, dataReadError+"                  1  fake/4") {
		t.Errorf("inspect exited %d: %s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runDataCmd(t, "pack", "--from", "datatest:x", "--out", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "sample 4 of datatest: the disk is gone") {
		t.Errorf("pack exited %d: %s%s", code, stdout, stderr)
	}
}

func TestDataPackRefusesItsSourceFolder(t *testing.T) {
	out := t.TempDir()
	if code, stdout, stderr := runDataCmd(t, "pack", "--from", "synthetic:3", "--out", out); code != 0 {
		t.Fatalf("pack exited %d: %s%s", code, stdout, stderr)
	}
	code, stdout, stderr := runDataCmd(t, "pack", "--from", "wds:"+filepath.Join(out, "000000.tar"), "--out", out, "--overwrite")
	if code != 2 || !strings.Contains(stderr, "holds the shards") {
		t.Errorf("pack into its source's folder exited %d: %s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "000000.tar")); err != nil {
		t.Errorf("the source shard is gone: %v", err)
	}
}

// TestPackedShardsTrainLikeTheirSource: a csv: manifest and the wds:
// shards that `data pack` makes of it train to the same parameters, bit
// for bit: the same samples in the same order, the same pixels and the
// same captions.
func TestPackedShardsTrainLikeTheirSource(t *testing.T) {
	dir := t.TempDir()
	var m strings.Builder
	m.WriteString("filepath\ttitle\n")
	for i := range 48 {
		img := fmt.Sprintf("img/%d.png", i)
		dataWriteFile(t, filepath.Join(dir, img), dataPNG(t, dataTestImage(10+i%7, 9+i%5, i, []string{"rgb", "rgb", "alpha"}[i%3])))
		fmt.Fprintf(&m, "%s\ta %s thing number %d\n", img, []string{"red", "blue", "green"}[i%3], i%4)
	}
	csv := filepath.Join(dir, "m.tsv")
	dataWriteFile(t, csv, []byte(m.String()))
	shards := filepath.Join(dir, "shards")
	if code, _, stderr := runDataCmd(t, "pack", "--from", "csv:"+csv, "--out", shards, "--shard-size", "20"); code != 0 {
		t.Fatalf("pack exited %d: %s", code, stderr)
	}
	sha := func(spec string) string {
		out := t.TempDir()
		var stdout, stderr bytes.Buffer
		args := []string{"train", "--data", spec, "--image-size", "8", "--steps", "6", "--batch", "16", "--hidden", "16",
			"--text-hidden", "8", "--dim", "8", "--no-eval", "--out", out}
		if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
			t.Fatalf("train --data %s exited %d: %s", spec, code, stderr.String())
		}
		s, err := rundir.ReadSummary(out)
		if err != nil {
			t.Fatal(err)
		}
		return s.ParamSHA256
	}
	a, b := sha("csv:"+csv), sha(dataShardPattern(shards, 3))
	if a == "" || a != b {
		t.Fatalf("csv: trained to %s, its packed shards to %s", a, b)
	}
}

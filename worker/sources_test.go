package worker

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/wds"
	"github.com/infonce/infonce/rundir"
)

// writeShapes writes an image folder of n small RGB images per class (a
// coloured square or disc on noise) under dir, and returns the folder
// spec. corrupt files of garbage are added to the first class.
func writeShapes(t testing.TB, dir string, n, corrupt int) string {
	t.Helper()
	r := rand.New(rand.NewPCG(7, uint64(n)))
	classes := []string{"red_square", "green_square", "blue_disc", "white_disc"}
	cols := []color.RGBA{{200, 20, 20, 255}, {20, 200, 20, 255}, {20, 20, 200, 255}, {230, 230, 230, 255}}
	for c, name := range classes {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			im := image.NewRGBA(image.Rect(0, 0, 20, 16))
			cx, cy := 5+r.IntN(10), 5+r.IntN(6)
			for y := range 16 {
				for x := range 20 {
					dx, dy := x-cx, y-cy
					in := dx*dx+dy*dy < 16
					if c < 2 {
						in = dx > -4 && dx < 4 && dy > -4 && dy < 4
					}
					if in {
						im.Set(x, y, cols[c])
					} else {
						im.Set(x, y, color.RGBA{uint8(r.IntN(60)), uint8(r.IntN(60)), uint8(r.IntN(60)), 255})
					}
				}
			}
			f, err := os.Create(filepath.Join(d, fmt.Sprintf("%03d.png", i)))
			if err != nil {
				t.Fatal(err)
			}
			if err := png.Encode(f, im); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		for i := range corrupt * boolInt(c == 0) {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("bad%02d.png", i)), []byte("not a png at all"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return "folder:" + dir
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// sourceConfig is smallConfig on a folder of shapes at 8×8 views.
func sourceConfig(t testing.TB, objective, spec string) Config {
	cfg := smallConfig(t, objective)
	cfg.Data = spec
	cfg.DataOptions.ImageSize = 8
	cfg.Batch = 12
	return cfg
}

func loadData(t testing.TB, cfg Config) *Data {
	t.Helper()
	data, err := LoadData(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestSourceDistributedEqualsSingleProcess is the invariant of
// TestDistributedEqualsSingleProcess on an image folder: K ranks, each
// decoding only its rows, give the loss and gradient of one process.
func TestSourceDistributedEqualsSingleProcess(t *testing.T) {
	spec := writeShapes(t, t.TempDir(), 8, 0)
	for _, objective := range []string{CLIP, SimCLR} {
		t.Run(objective, func(t *testing.T) {
			cfg := sourceConfig(t, objective, spec)
			cfg.LearnTemperature = true
			data := loadData(t, cfg)
			rc := allreduce.Config{JobID: "sources"}
			one, want := stepOnRanksData(t, cfg, data, 1, 2, rc, func(*allreduce.Ring) Comm[float64] { return Single[float64]{} })
			for _, K := range []int{2, 3} {
				got, loss := stepOnRanksData(t, cfg, data, K, 2, rc, func(r *allreduce.Ring) Comm[float64] { return ring64{r} })
				for s := range want {
					if d := math.Abs(loss[s]-want[s]) / math.Abs(want[s]); d > 1e-10 {
						t.Errorf("K=%d step %d: loss %v, single process %v", K, s, loss[s], want[s])
					}
				}
				for k, tr := range got {
					if d := relDiff(tr.Model.P.W, one[0].Model.P.W); d > 1e-10 {
						t.Errorf("K=%d rank %d: parameters differ by %.2g relative", K, k, d)
					}
				}
			}
		})
	}
}

// TestSourceRunTrainsAndEvaluates trains CLIP on a folder with a
// validation folder: the loss falls, and the evaluation reports zero-shot,
// retrieval and the linear probe, well above chance on these easy shapes.
func TestSourceRunTrainsAndEvaluates(t *testing.T) {
	dir := t.TempDir()
	cfg := sourceConfig(t, CLIP, writeShapes(t, filepath.Join(dir, "train"), 24, 0))
	cfg.DataOptions.ValData = writeShapes(t, filepath.Join(dir, "val"), 8, 0)
	cfg.Batch, cfg.Steps, cfg.LR = 32, 60, 3e-3
	sum, err := RunLocalData(context.Background(), cfg, loadData(t, cfg), Options{Evaluate: true})
	if err != nil {
		t.Fatal(err)
	}
	ev := sum.Evaluation
	if ev.ZeroShotTop1 == nil || ev.RecallI2TAt1 == nil {
		t.Fatalf("evaluation without zero-shot or retrieval: %+v", ev)
	}
	// Four classes: chance is 25 %.
	if *ev.ZeroShotTop1 < 0.5 || ev.LinearProbeAccuracy < 0.5 {
		t.Errorf("zero-shot %.2f, probe %.2f: want both above 0.5 (chance 0.25)", *ev.ZeroShotTop1, ev.LinearProbeAccuracy)
	}
	if sum.BadSamples != nil {
		t.Errorf("bad samples %v in a clean folder", sum.BadSamples)
	}
}

// TestBadSamplesAreCountedAndReplaced: a few corrupt images are counted by
// reason and replaced, and the run goes on; a folder past
// --max-bad-fraction stops with an error that names examples.
func TestBadSamplesAreCountedAndReplaced(t *testing.T) {
	cfg := sourceConfig(t, CLIP, writeShapes(t, t.TempDir(), 40, 1))
	cfg.Steps = 20
	cfg.DataOptions.MaxBadFraction = 0.05
	sum, err := RunLocalData(context.Background(), cfg, loadData(t, cfg), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.BadSamples["corrupt-image"] == 0 {
		t.Errorf("bad samples %v, want corrupt-image counted", sum.BadSamples)
	}
	ms, _, err := rundir.ReadMetrics(cfg.Out)
	if err != nil {
		t.Fatal(err)
	}
	if last := ms[len(ms)-1]; last.BadSamples["corrupt-image"] != sum.BadSamples["corrupt-image"] {
		t.Errorf("metrics.jsonl's last line counts %v, the summary %v", last.BadSamples, sum.BadSamples)
	}

	cfg = sourceConfig(t, CLIP, writeShapes(t, t.TempDir(), 10, 8))
	cfg.Steps = 20
	_, err = RunLocalData(context.Background(), cfg, loadData(t, cfg), Options{})
	if !errors.Is(err, ErrTooManyBadSamples) || !strings.Contains(err.Error(), "corrupt-image") || !strings.Contains(err.Error(), "bad0") {
		t.Fatalf("err = %v, want ErrTooManyBadSamples naming the reason and an example", err)
	}
}

// TestSourceResumeIsBitExact: a run on a folder resumed from its
// checkpoint ends with the parameters of the uninterrupted run.
func TestSourceResumeIsBitExact(t *testing.T) {
	cfg := sourceConfig(t, SimCLR, writeShapes(t, t.TempDir(), 12, 0))
	data := loadData(t, cfg)
	whole, err := NewTrainerData[float32](cfg, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer whole.Close()
	want := trainSteps(t, whole, 0, 6)
	first, _ := NewTrainerData[float32](cfg, data, nil)
	defer first.Close()
	got := trainSteps(t, first, 0, 3)
	if _, err := first.Save(context.Background(), 3, 0); err != nil {
		t.Fatal(err)
	}
	c, err := (&checkpoint.Store{Root: CheckpointDir(cfg.Out)}).LoadLatest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	second, _ := NewTrainerData[float32](cfg, data, nil)
	defer second.Close()
	if next, err := second.Restore(c); err != nil || next != 3 {
		t.Fatalf("restore: next %d, %v", next, err)
	}
	got = append(got, trainSteps(t, second, 3, 6)...)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("step %d: loss %v after resume, %v uninterrupted", i, got[i], want[i])
		}
	}
	if a, b := ParamSHA256(second.Model.P.W), ParamSHA256(whole.Model.P.W); a != b {
		t.Fatalf("parameters differ after resume: %s vs %s", a, b)
	}
}

// TestEvalEvery: --eval-every writes evaluations into metrics.jsonl
// during the run, and they improve on these easy shapes.
func TestEvalEvery(t *testing.T) {
	dir := t.TempDir()
	cfg := sourceConfig(t, CLIP, writeShapes(t, filepath.Join(dir, "train"), 16, 0))
	cfg.DataOptions.ValData = writeShapes(t, filepath.Join(dir, "val"), 4, 0)
	cfg.Batch, cfg.Steps, cfg.LR, cfg.EvalEvery = 32, 40, 3e-3, 10
	if _, err := RunLocalData(context.Background(), cfg, loadData(t, cfg), Options{}); err != nil {
		t.Fatal(err)
	}
	ms, _, err := rundir.ReadMetrics(cfg.Out)
	if err != nil {
		t.Fatal(err)
	}
	var evals []float64
	for _, m := range ms {
		if m.Eval != nil {
			if m.Eval.ZeroShotTop1 == nil {
				t.Fatalf("step %d: evaluation without zero-shot", m.Step)
			}
			evals = append(evals, *m.Eval.ZeroShotTop1)
		}
	}
	if len(evals) != 3 { // after steps 10, 20 and 30; the final one is the summary's
		t.Fatalf("%d evaluations in metrics.jsonl, want 3", len(evals))
	}
}

// writePNGFolder writes the images of a grey idx split as a PNG image
// folder, one folder per class (named as the set names it, spaces as _).
func writePNGFolder(t testing.TB, dir string, set *dataset.Set, split dataset.Images) string {
	t.Helper()
	for i := range split.N {
		class := strings.ReplaceAll(set.Classes[split.Labels[i]], " ", "_")
		d := filepath.Join(dir, class)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		im := image.NewGray(image.Rect(0, 0, split.W, split.H))
		copy(im.Pix, split.Image(i))
		f, err := os.Create(filepath.Join(d, fmt.Sprintf("%05d.png", i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, im); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	return "folder:" + dir
}

// TestFolderMatchesIDX: grey 28×28 digits written out as a PNG folder
// train through folder: to the zero-shot accuracy they reach through the
// idx set they came from, within the noise of the two pipelines (the
// folder's views are normalised and keyed differently, and its captions
// come from generic templates).
func TestFolderMatchesIDX(t *testing.T) {
	if testing.Short() {
		t.Skip("two training runs of 4,000 digits; skipped with -short")
	}
	set := smallMNIST(t, 4000, 1000)
	dir := t.TempDir()
	cfg := smallConfig(t, CLIP)
	cfg.ImageHidden, cfg.TextHidden, cfg.Dim = []int{128}, 64, 32
	cfg.Batch, cfg.Steps, cfg.LR, cfg.Warmup = 200, 100, 2e-3, 0
	idx, err := RunLocal(context.Background(), cfg, set, Options{Evaluate: true})
	if err != nil {
		t.Fatal(err)
	}
	fcfg := cfg
	fcfg.Out = t.TempDir()
	fcfg.Data = writePNGFolder(t, filepath.Join(dir, "train"), set, set.Train)
	fcfg.DataOptions.ValData = writePNGFolder(t, filepath.Join(dir, "val"), set, set.Test)
	none := 0.0
	fcfg.DataOptions.ImageSize, fcfg.DataOptions.CropScale, fcfg.DataOptions.FlipProb = 28, [2]float64{1, 1}, &none
	folder, err := RunLocalData(context.Background(), fcfg, loadData(t, fcfg), Options{Evaluate: true})
	if err != nil {
		t.Fatal(err)
	}
	a, b := *idx.ZeroShotTop1, *folder.ZeroShotTop1
	t.Logf("zero-shot top-1: idx %.3f, folder %.3f; linear probe: idx %.3f, folder %.3f", a, b, idx.LinearProbeAccuracy, folder.LinearProbeAccuracy)
	if a < 0.5 || math.Abs(a-b) > 0.06 {
		t.Errorf("zero-shot top-1 through idx %.3f and through folder %.3f: want both trained (> 0.5) and within 0.06", a, b)
	}
}

// TestDataCacheIsExact: with --data-cache-mb the run decodes each sample
// once and trains to the same parameters as without it.
func TestDataCacheIsExact(t *testing.T) {
	cfg := sourceConfig(t, SimCLR, writeShapes(t, t.TempDir(), 10, 0))
	data := loadData(t, cfg)
	plain, err := NewTrainerData[float32](cfg, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	trainSteps(t, plain, 0, 8)
	cfg.DataOptions.CacheMB = 16
	cached, err := NewTrainerData[float32](cfg, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cached.Close()
	trainSteps(t, cached, 0, 8)
	if a, b := ParamSHA256(plain.Model.P.W), ParamSHA256(cached.Model.P.W); a != b {
		t.Fatalf("with the cache the parameters are %s, without %s", b, a)
	}
	if n := len(cached.cache.m); n != data.Train.Len() {
		t.Errorf("the cache holds %d of %d samples after 8 epochs' steps", n, data.Train.Len())
	}
}

// packShapes writes the samples of a folder source as WebDataset shards
// (their labels as cls members, no class names) and returns the spec.
func packShapes(t testing.TB, folder, dir string) string {
	t.Helper()
	src, err := dataset.Open(folder, dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wds.NewWriter(dir, wds.WriterOptions{ShardSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var s dataset.Sample
	for i := range src.Len() {
		if err := src.Sample(context.Background(), i, &s); err != nil {
			t.Fatal(err)
		}
		members, err := wds.Members(&s)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(fmt.Sprintf("%06d", i), members); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return "wds:" + w.Pattern()
}

// TestShardsWithClassNumbers: shards whose samples carry class numbers but
// no class names get the linear probe (on the numbers) and no zero-shot.
func TestShardsWithClassNumbers(t *testing.T) {
	dir := t.TempDir()
	train := packShapes(t, writeShapes(t, filepath.Join(dir, "train"), 24, 0), filepath.Join(dir, "train-wds"))
	val := packShapes(t, writeShapes(t, filepath.Join(dir, "val"), 8, 0), filepath.Join(dir, "val-wds"))
	cfg := sourceConfig(t, CLIP, train)
	cfg.DataOptions.ValData = val
	cfg.Batch, cfg.Steps, cfg.LR = 32, 40, 3e-3
	sum, err := RunLocalData(context.Background(), cfg, loadData(t, cfg), Options{Evaluate: true})
	if err != nil {
		t.Fatal(err)
	}
	if sum.ZeroShotTop1 != nil {
		t.Errorf("zero-shot %v without class names", *sum.ZeroShotTop1)
	}
	if sum.LinearProbeAccuracy < 0.5 {
		t.Errorf("linear probe %.3f on 4 easy classes, want above 0.5", sum.LinearProbeAccuracy)
	}
}

// TestAugmentationFlags: the SimCLR augmentation settings reach the views
// (turning the colour ones off changes the run), and the normalisation too.
func TestAugmentationFlags(t *testing.T) {
	spec := writeShapes(t, t.TempDir(), 8, 0)
	sha := func(edit func(*DataOptions)) string {
		cfg := sourceConfig(t, SimCLR, spec)
		edit(&cfg.DataOptions)
		tr, err := NewTrainerData[float32](cfg, loadData(t, cfg), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		trainSteps(t, tr, 0, 2)
		return ParamSHA256(tr.Model.P.W)
	}
	zero := 0.0
	base := sha(func(*DataOptions) {})
	if base != sha(func(*DataOptions) {}) {
		t.Fatal("the same settings train differently")
	}
	if sha(func(o *DataOptions) { o.JitterProb, o.GrayProb, o.BlurProb = &zero, &zero, &zero }) == base {
		t.Error("turning the colour augmentations off changed nothing")
	}
	if sha(func(o *DataOptions) { o.Mean = &[3]float32{0.5, 0.5, 0.5} }) == base {
		t.Error("another normalisation changed nothing")
	}
	cfg := sourceConfig(t, SimCLR, spec)
	cfg.DataOptions.Background = "white"
	if err := cfg.Validate(); err == nil {
		t.Error("--image-background white accepted; want #rrggbb")
	}
}

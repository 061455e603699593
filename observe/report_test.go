package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	_ "image/png"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/rundir"
	"github.com/infonce/infonce/worker"
)

func metricLine(step int64, loss float64) string {
	b, _ := json.Marshal(worker.Metric{Step: step, Loss: loss, LogitScale: 14, LR: 1e-3, SamplesPerSecond: 1000,
		StepTime: rundir.Breakdown{ForwardMS: 1, TotalMS: 3}})
	return string(b)
}

func TestReadMetrics(t *testing.T) {
	l0, l1, l2 := metricLine(0, 5), metricLine(1, 4), metricLine(2, 3)
	for _, tc := range []struct {
		name      string
		in        string
		steps     []int64
		truncated int
		err       string
	}{
		{name: "empty", in: ""},
		{name: "three lines", in: l0 + "\n" + l1 + "\n" + l2 + "\n", steps: []int64{0, 1, 2}},
		{name: "blank lines and no final newline", in: "\n" + l0 + "\n\n  \n" + l1, steps: []int64{0, 1}},
		{name: "a torn last line is dropped", in: l0 + "\n" + l1 + "\n" + l2[:len(l2)/2], steps: []int64{0, 1}, truncated: 1},
		{name: "a bad line in the middle is an error", in: l0 + "\n{\"step\": 1,\n" + l2 + "\n", err: "line 2"},
		{name: "a bad complete last line is an error", in: l0 + "\nnot json\n", err: "line 2"},
		{name: "wrong type", in: `{"step": "one"}` + "\n", err: "line 1"},
		{name: "a line too long", in: l0 + "\n" + strings.Repeat(" ", MaxMetricLine+1) + "\n", err: "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms, truncated, err := ReadMetrics(strings.NewReader(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one naming %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var steps []int64
			for _, m := range ms {
				steps = append(steps, m.Step)
			}
			if len(steps) != len(tc.steps) || truncated != tc.truncated {
				t.Fatalf("steps %v truncated %d, want %v and %d", steps, truncated, tc.steps, tc.truncated)
			}
			for i := range steps {
				if steps[i] != tc.steps[i] {
					t.Fatalf("steps %v, want %v", steps, tc.steps)
				}
			}
		})
	}
}

func TestHistory(t *testing.T) {
	// A run logged steps 9..29, crashed, and resumed from the checkpoint
	// of step 20: steps 19..39 follow. The later lines win.
	var ms []worker.Metric
	for s := int64(9); s < 30; s += 10 {
		ms = append(ms, worker.Metric{Step: s, Loss: 1})
	}
	for s := int64(19); s < 40; s += 10 {
		ms = append(ms, worker.Metric{Step: s, Loss: 2})
	}
	h := History(ms)
	want := []struct {
		step int64
		loss float64
	}{{9, 1}, {19, 2}, {29, 2}, {39, 2}}
	if len(h) != len(want) {
		t.Fatalf("history %v", h)
	}
	for i, w := range want {
		if h[i].Step != w.step || h[i].Loss != w.loss {
			t.Errorf("history[%d] = step %d loss %g, want %d %g", i, h[i].Step, h[i].Loss, w.step, w.loss)
		}
	}
}

func FuzzReadMetrics(f *testing.F) {
	f.Add([]byte(metricLine(0, 5) + "\n" + metricLine(1, 4) + "\n"))
	f.Add([]byte("\n\n{"))
	f.Add([]byte(`{"step":1e400}`))
	f.Add([]byte(`{"step_time":{"data_ms":"x"}}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, truncated, err := ReadMetrics(bytes.NewReader(b))
		if err != nil {
			if ms != nil {
				t.Fatal("lines returned with an error")
			}
			return
		}
		if truncated > 1 {
			t.Fatalf("%d lines dropped; at most the last one may be", truncated)
		}
		_ = History(ms)
	})
}

// smallSet is a small labelled image set with signal to learn: n training
// and m test images of 8×8 pixels, each a bright bar whose position is its
// class, plus noise. It is seeded, so every run of the test is the same.
func smallSet(n, m int) *dataset.Set {
	const side, classes = 8, 8
	rng := rand.New(rand.NewPCG(1, 2))
	images := func(k int) dataset.Images {
		im := dataset.Images{N: k, H: side, W: side, Pixels: make([]byte, k*side*side), Labels: make([]uint8, k)}
		for i := range k {
			c := rng.IntN(classes)
			im.Labels[i] = uint8(c)
			px := im.Image(i)
			for j := range px {
				px[j] = byte(rng.IntN(64))
			}
			for r := range side {
				px[r*side+c] = byte(192 + rng.IntN(64))
			}
		}
		return im
	}
	names := []string{"zero", "one", "two", "three", "four", "five", "six", "seven"}
	return &dataset.Set{Name: "bars", Classes: names, Train: images(n), Test: images(m)}
}

func TestWriteReportOfARealRun(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a small model; skipped with -short")
	}
	run := t.TempDir()
	cfg := worker.DefaultConfig()
	cfg.Steps, cfg.Batch, cfg.LogEvery = 80, 64, 2
	cfg.ImageHidden, cfg.TextHidden, cfg.Dim = []int{32}, 16, 8
	cfg.Schedule, cfg.Warmup, cfg.LR, cfg.MinLR = "cosine", 10, 3e-3, 1e-4
	cfg.Out = run
	cfg.Data = "bars"
	opt := worker.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Evaluate: true}
	if _, err := worker.RunLocal(context.Background(), cfg, smallSet(2048, 256), opt); err != nil {
		t.Fatal(err)
	}
	out := artifactDir(t, "report")
	rep, err := WriteReport(run, out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Lines != 40 || rep.Truncated != 0 {
		t.Errorf("report of %d lines (%d torn), want 40 and 0", rep.Lines, rep.Truncated)
	}
	wantPlots := []string{"loss.png", "logit_scale.png", "lr.png", "throughput.png", "grad_norm.png", "step_time.png"}
	if strings.Join(rep.Plots, " ") != strings.Join(wantPlots, " ") {
		t.Errorf("plots %v, want %v", rep.Plots, wantPlots)
	}
	for _, p := range rep.Plots {
		f, err := os.Open(filepath.Join(out, p))
		if err != nil {
			t.Fatal(err)
		}
		cfg, format, err := image.DecodeConfig(f)
		f.Close()
		if err != nil || format != "png" || cfg.Width < 500 || cfg.Height < 200 {
			t.Errorf("%s: %s %dx%d %v", p, format, cfg.Width, cfg.Height, err)
		}
	}
	page, err := os.ReadFile(rep.HTML)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<img src="loss.png"`, `<img src="step_time.png"`, ">final_loss<", ">objective<", ">clip<", ">bars<",
		">linear_probe_accuracy<", ">step_time.total_ms<", `<table id="config">`, ">batch<", "steps 2–80, 40 metrics lines"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	t.Logf("report in %s", out)
}

func TestWriteReportErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		metrics *string
		summary *string
		want    string
	}{
		{name: "no run directory", want: "metrics.jsonl"},
		{name: "no lines yet", metrics: ptr(""), want: "no lines"},
		{name: "corrupt metrics", metrics: ptr("{\n" + metricLine(1, 1) + "\n"), want: "line 1"},
		{name: "corrupt summary", metrics: ptr(metricLine(1, 1) + "\n"), summary: ptr("{"), want: "summary.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := t.TempDir()
			if tc.metrics != nil {
				if err := os.WriteFile(filepath.Join(run, "metrics.jsonl"), []byte(*tc.metrics), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.summary != nil {
				if err := os.WriteFile(filepath.Join(run, "summary.json"), []byte(*tc.summary), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := WriteReport(run, ""); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestReportPageWithoutSummary(t *testing.T) {
	dir := t.TempDir()
	var ms []worker.Metric
	for s := int64(0); s < 30; s++ {
		ms = append(ms, worker.Metric{Step: s, Loss: 5 / float64(s+1)})
	}
	rep := &Report{Dir: dir, HTML: filepath.Join(dir, "report.html"), Plots: []string{"loss.png"}, Lines: 30, Truncated: 1}
	if err := writeReportHTML(rep.HTML, "runs/x", nil, rep, ms); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(rep.HTML)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"No summary.json", "steps 1–30, 30 metrics lines (1 torn last line dropped)", `<img src="loss.png"`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func ptr(s string) *string { return &s }

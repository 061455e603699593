package scaling

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeLauncher writes the summary.json a job of n workers would, with a
// throughput of x1·n·eff(n) and the given breakdown.
type fakeLauncher struct {
	x1   float64
	eff  func(n int) float64
	jobs []Job
	fail int // fail the job with this many workers
}

func (f *fakeLauncher) Launch(ctx context.Context, j Job) (Usage, error) {
	f.jobs = append(f.jobs, j)
	if j.Workers == f.fail {
		return Usage{}, fmt.Errorf("worker 1: exit status 1")
	}
	if err := os.MkdirAll(filepath.Join(j.Out, "checkpoints", "step-1"), 0o755); err != nil {
		return Usage{}, err
	}
	// Repeats differ a little so the median is the middle one.
	rep := 0
	for _, o := range f.jobs {
		if o.Workers == j.Workers {
			rep++
		}
	}
	x := f.x1 * float64(j.Workers) * f.eff(j.Workers) * (1 + 0.01*float64(rep%3))
	stepMS := 1e3 * 64 / x
	sum := map[string]any{
		"workers": j.Workers, "steps": j.Steps, "samples": j.Steps * 64, "samples_per_second": x, "train_seconds": float64(j.Steps) * stepMS / 1e3,
		"step_time": map[string]float64{"forward_ms": stepMS * 0.3, "backward_ms": stepMS * 0.4, "reduce_ms": stepMS * 0.2, "total_ms": stepMS * 0.9},
		"config":    map[string]any{"objective": "clip", "batch": 64, "dim": 8},
	}
	b, _ := json.Marshal(sum)
	if err := os.WriteFile(filepath.Join(j.Out, "summary.json"), b, 0o644); err != nil {
		return Usage{}, err
	}
	manifest := `{"files":[{"name":"params.zst","raw_size":4000},{"name":"optim_m.zst","raw_size":4000}]}`
	if err := os.WriteFile(filepath.Join(j.Out, "checkpoints", "step-1", "manifest.json"), []byte(manifest), 0o644); err != nil {
		return Usage{}, err
	}
	return Usage{WallSeconds: 2, CPUSeconds: float64(j.Workers)}, nil
}

func TestMeasureAndOutputs(t *testing.T) {
	out := t.TempDir()
	o := Options{Workers: []int{1, 2, 4}, Steps: 5, Repeat: 3, Threads: 1, Out: out, Cores: 2, Timeout: defaultTimeout, TrainArgs: []string{"--batch", "64"}}
	fl := &fakeLauncher{x1: 1000, eff: func(n int) float64 { return 1 / (1 + 0.1*float64(n-1)) }}
	rep, err := Measure(context.Background(), o, fl, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(fl.jobs) != 9 || fl.jobs[0].Threads != 1 || !slices.Equal(fl.jobs[4].TrainArgs, o.TrainArgs) || fl.jobs[4].Workers != 2 {
		t.Fatalf("jobs %+v", fl.jobs)
	}
	// The repeats go round the worker counts.
	for i, j := range fl.jobs {
		if want := o.Workers[i%3]; j.Workers != want {
			t.Errorf("job %d has %d workers, want %d", i, j.Workers, want)
		}
	}
	if rep.Objective != "clip" || rep.Batch != 64 || rep.Params != 1000 || len(rep.Points) != 3 {
		t.Fatalf("report %+v", rep)
	}
	for i, p := range rep.Points {
		n := o.Workers[i]
		// The median of 1.00, 1.01, 1.02 times the throughput (in some
		// order) is 1.01 times it.
		want := 1000 * float64(n) * fl.eff(n) * 1.01
		if d := p.SamplesPerSecond/want - 1; d > 1e-12 || d < -1e-12 {
			t.Errorf("%d workers: %g samples/s, want the median %g", n, p.SamplesPerSecond, want)
		}
		if d := p.Efficiency - fl.eff(n); d > 1e-12 || d < -1e-12 {
			t.Errorf("%d workers: efficiency %g, want %g", n, p.Efficiency, fl.eff(n))
		}
		if p.Oversubscribed != (n > 2) || len(p.Runs) != 3 || p.MinSamplesPerSec > p.SamplesPerSecond || p.MaxSamplesPerSec < p.SamplesPerSecond {
			t.Errorf("point %+v", p)
		}
		if ph := p.StepTime.Phases(p.StepMS); ph[len(ph)-1].Name != "other" || ph[len(ph)-1].MS <= 0 {
			t.Errorf("phases %v: the 10%% outside the phases is not 'other'", ph)
		}
	}
	m, err := FitReport(rep)
	if err != nil {
		t.Fatal(err)
	}
	rep.Model = &m
	if err := WriteOutputs(rep, out); err != nil {
		t.Fatal(err)
	}
	checkOutputs(t, out, o.Workers)
}

// checkOutputs verifies the shape of scaling.csv and scaling.json and that
// every plot was written.
func checkOutputs(t *testing.T, dir string, workers []int) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "scaling.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1+len(workers) || !slices.Equal(rows[0], csvHeader) {
		t.Fatalf("csv has %d rows, header %q", len(rows), rows[0])
	}
	for i, r := range rows[1:] {
		if len(r) != len(csvHeader) || r[0] != fmt.Sprint(workers[i]) {
			t.Errorf("csv row %q", r)
		}
	}
	if rows[1][7] != "1" {
		t.Errorf("efficiency of the baseline is %q, want 1", rows[1][7])
	}
	jf, err := os.Open(filepath.Join(dir, "scaling.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer jf.Close()
	rep, err := ReadReport(jf)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Points) != len(workers) || rep.Points[0].Workers != workers[0] || rep.Machine.Cores < 1 || rep.Points[0].Runs[0].Dir == "" {
		t.Errorf("json report %+v", rep)
	}
	var raw map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "scaling.json"))
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"date", "machine", "network", "points", "params", "batch"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("scaling.json has no %q", k)
		}
	}
	for _, name := range PlotFiles {
		for _, ext := range []string{".png", ".svg"} {
			st, err := os.Stat(filepath.Join(dir, name+ext))
			if err != nil || st.Size() < 1000 {
				t.Errorf("plot %s%s: %v", name, ext, err)
			}
		}
	}
	png, _ := os.ReadFile(filepath.Join(dir, "throughput.png"))
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Error("throughput.png is not a PNG")
	}
	svg, _ := os.ReadFile(filepath.Join(dir, "breakdown.svg"))
	if !strings.Contains(string(svg), "<svg") || !strings.Contains(string(svg), "all-reduce") {
		t.Error("breakdown.svg has no svg element or no all-reduce legend")
	}
}

func TestMeasureReportsAFailedJob(t *testing.T) {
	o := Options{Workers: []int{1, 2}, Steps: 2, Repeat: 1, Out: t.TempDir(), Cores: 2, Timeout: defaultTimeout}
	fl := &fakeLauncher{x1: 1000, eff: func(int) float64 { return 1 }, fail: 2}
	_, err := Measure(context.Background(), o, fl, nil)
	if err == nil || !strings.Contains(err.Error(), "2 worker(s)") {
		t.Fatalf("Measure = %v, want the failed job named", err)
	}
}

func TestMedianIndex(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want int
	}{
		{[]float64{5}, 0},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 3}, // lower median: 2
		{[]float64{1, 1, 1}, 1},    // ties keep run order
	} {
		if got := medianIndex(tc.xs); got != tc.want {
			t.Errorf("medianIndex(%v) = %d, want %d", tc.xs, got, tc.want)
		}
	}
}

func TestWriteTable(t *testing.T) {
	rep := &Report{Objective: "clip", Batch: 8, Machine: Machine{CPU: "cpu", Cores: 2}, Network: "loopback", Points: []Point{
		{Workers: 2, Threads: 1, SamplesPerSecond: 100, StepMS: 80, StepTime: Breakdown{ForwardMS: 10, TotalMS: 10}},
		{Workers: 4, Threads: 1, Oversubscribed: true, SamplesPerSecond: 150, StepMS: 53},
	}}
	setEfficiencies(rep.Points)
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, want := range []string{"4*", "0.750", "exceed the 2 cores", "against 2 workers"} {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
}

func TestFromAndFit(t *testing.T) {
	// Two reports of the same model: loopback, and 1 Gbit/s links.
	dirs := []string{t.TempDir(), t.TempDir()}
	for i, dir := range dirs {
		o := Options{Workers: []int{1, 2, 4}, Steps: 5, Repeat: 1, Threads: 1, Out: dir, Cores: 2, Timeout: defaultTimeout}
		fl := &fakeLauncher{x1: 1000, eff: func(n int) float64 { return 1 / (1 + 0.2*float64(i+1)*float64(n-1)) }}
		rep, err := Measure(context.Background(), o, fl, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "jobs", "w1-r0", "checkpoints")); !os.IsNotExist(err) {
			t.Errorf("the job's checkpoints were kept: %v", err)
		}
		if i == 1 {
			rep.LinkBPS = 1e9
		}
		if err := WriteOutputs(rep, dir); err != nil {
			t.Fatal(err)
		}
	}
	redraw := t.TempDir()
	var stdout bytes.Buffer
	if err := Main(context.Background(), []string{"--from", filepath.Join(dirs[0], "scaling.json"), "--out", redraw}, &stdout, io.Discard, "unused"); err != nil {
		t.Fatal(err)
	}
	checkOutputs(t, redraw, []int{1, 2, 4})

	fitDir := t.TempDir()
	stdout.Reset()
	args := []string{"--fit", filepath.Join(dirs[0], "scaling.json") + "," + filepath.Join(dirs[1], "scaling.json"), "--hop-ms", "0.5", "--out", fitDir}
	if err := Main(context.Background(), args, &stdout, io.Discard, "unused"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(fitDir, "model.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Model       Model        `json:"model"`
		Predictions []Prediction `json:"predictions"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Model.HopMS != 0.5 || got.Model.NominalBitsPerSecond != 1e9 || len(got.Predictions) != len(PredictWorkers)*len(PredictRates) {
		t.Errorf("model.json: %+v, %d predictions", got.Model, len(got.Predictions))
	}
	if !strings.Contains(stdout.String(), "λ set to 0.500 ms") || !strings.Contains(stdout.String(), "100gbit") {
		t.Errorf("fit output:\n%s", stdout.String())
	}
}

// TestSteadyRate: the throughput once warmed up skips the logged steps of
// the first tenth of the run, and needs two lines after it.
func TestSteadyRate(t *testing.T) {
	dir := t.TempDir()
	// 100 steps of batch 10, logged every 10; the first 10 steps took 5 s
	// (warm-up), every later one 0.1 s.
	var b strings.Builder
	clock := 1000.0
	for step := int64(9); step < 100; step += 10 {
		if step == 9 {
			clock += 5
		} else {
			clock += 1
		}
		fmt.Fprintf(&b, `{"step":%d,"loss":1,"time":%.3f}`+"\n", step, clock)
	}
	b.WriteString("not json\n")
	if err := os.WriteFile(filepath.Join(dir, "metrics.jsonl"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	rate, ok := steadyRate(dir, 100, 10)
	if !ok || math.Abs(rate-100) > 1e-6 {
		t.Errorf("steady rate %v (ok %v), want 100 samples/s", rate, ok)
	}
	if _, ok := steadyRate(t.TempDir(), 100, 10); ok {
		t.Error("a job without metrics.jsonl has a steady rate")
	}
	one := filepath.Join(t.TempDir())
	if err := os.WriteFile(filepath.Join(one, "metrics.jsonl"), []byte(`{"step":99,"time":5}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := steadyRate(one, 100, 10); ok {
		t.Error("one line gave a steady rate")
	}
}

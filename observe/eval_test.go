package observe

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/infonce/infonce/rundir"
	"github.com/infonce/infonce/worker"
)

// TestEvalGauges: /metrics shows no evaluation before the first one, then
// the scores of the latest and the step it was measured at; a score the
// evaluation did not measure is absent, not zero.
func TestEvalGauges(t *testing.T) {
	reg := NewRegistry()
	w, err := NewWorker(reg, WorkerOptions{Role: "worker"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(Endpoints{Gatherer: reg}))
	defer srv.Close()
	scrape := func() string {
		t.Helper()
		res, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if body := scrape(); strings.Contains(body, "infonce_eval_") {
		t.Fatalf("evaluation gauges before any evaluation:\n%s", grepLines(body, "infonce_eval_"))
	}
	f := func(v float64) *float64 { return &v }
	w.Evaluated(30, worker.Evaluation{ZeroShotTop1: f(0.25), RecallI2TAt1: f(0.125), LinearProbeAccuracy: 0.5, Uniformity: -1.5})
	w.Evaluated(60, worker.Evaluation{ZeroShotTop1: f(0.75), LinearProbeAccuracy: 0.875, Uniformity: -2})
	body := scrape()
	for _, want := range []string{
		"infonce_eval_step 60\n",
		"infonce_eval_zero_shot_top1 0.75\n",
		"infonce_eval_linear_probe_accuracy 0.875\n",
		"infonce_eval_uniformity -2\n",
		"# TYPE infonce_eval_zero_shot_top1 gauge\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, grepLines(body, "infonce_eval_"))
		}
	}
	for _, absent := range []string{"infonce_eval_recall_i2t_at_1", "infonce_eval_action_r2", "infonce_eval_action_r2_per_dim"} {
		if strings.Contains(body, absent) {
			t.Errorf("/metrics shows %s, which the latest evaluation did not measure", absent)
		}
	}
	if got, ok := value(t, reg, "infonce_eval_zero_shot_top1"); !ok || got != 0.75 {
		t.Errorf("infonce_eval_zero_shot_top1 = %g (present %v), want 0.75", got, ok)
	}
}

// TestEvalScoresCoverEvaluation: every number field of the evaluation has
// its gauge, named after its JSON name.
func TestEvalScoresCoverEvaluation(t *testing.T) {
	names := map[string]bool{}
	for _, s := range evalScores() {
		names[s.name] = true
	}
	for _, want := range []string{"zero_shot_top1", "zero_shot_top5", "recall_i2t_at_1", "recall_t2i_at_10", "median_rank_t2i",
		"class_recall_i2t_at_1", "linear_probe_accuracy", "pixel_probe_accuracy", "action_recall_at_1", "action_r2",
		"temporal_kendall_tau", "alignment", "uniformity"} {
		if !names[want] {
			t.Errorf("no gauge infonce_eval_%s", want)
		}
	}
	if names["action_r2_per_dim"] {
		t.Error("the per-dimension list is exported as one gauge")
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// TestCoordinatorEvalGauges: a coordinator with the run directory exports
// the latest evaluation that rank 0 appended to metrics.jsonl: none before
// the file or its first evaluation, then the newest, read as the file
// grows (a line still being written waits for its newline), and a file
// started anew by another run forgets the old one.
func TestCoordinatorEvalGauges(t *testing.T) {
	run := t.TempDir()
	reg := NewRegistry()
	if _, err := NewCoordinator(reg, &fakeStatus{st: runningStatus()}, CoordinatorOptions{RunDir: run}); err != nil {
		t.Fatal(err)
	}
	top1 := func() (float64, bool) { return value(t, reg, "infonce_eval_zero_shot_top1") }
	step := func() (float64, bool) { return value(t, reg, "infonce_eval_step") }
	if _, ok := step(); ok {
		t.Fatal("evaluation gauges without metrics.jsonl")
	}
	appendTo := func(s string) {
		t.Helper()
		f, err := os.OpenFile(rundir.MetricsPath(run), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	appendTo(metricLine(0, 3) + "\n" + metricLine(1, 2) + "\n")
	if _, ok := step(); ok {
		t.Fatal("evaluation gauges before any evaluation")
	}
	appendTo(evalLine(1, 0.25, 0.5) + "\n" + metricLine(2, 2) + "\n")
	if v, ok := top1(); !ok || v != 0.25 {
		t.Errorf("zero-shot top-1 %g (present %v), want 0.25", v, ok)
	}
	if v, _ := step(); v != 2 {
		t.Errorf("eval step %g, want 2 (completed steps)", v)
	}
	line := evalLine(3, 0.5, 0.75)
	appendTo("not json\n" + line[:20])
	if v, _ := top1(); v != 0.25 {
		t.Errorf("zero-shot top-1 %g with a half-written line, want 0.25 still", v)
	}
	appendTo(line[20:] + "\n")
	if v, _ := top1(); v != 0.5 {
		t.Errorf("zero-shot top-1 %g, want 0.5", v)
	}
	if v, _ := value(t, reg, "infonce_eval_linear_probe_accuracy"); v != 0.75 {
		t.Errorf("linear probe %g, want 0.75", v)
	}
	if v, _ := step(); v != 4 {
		t.Errorf("eval step %g, want 4", v)
	}
	if err := os.WriteFile(rundir.MetricsPath(run), []byte(metricLine(0, 3)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := step(); ok {
		t.Error("a new run's metrics.jsonl still shows the old run's evaluation")
	}
}

package observe

import (
	"encoding/json"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infonce/infonce/rundir"
)

// evalLine is a metrics line with an evaluation after step (0-based).
func evalLine(step int64, top1, probe float64) string {
	b, _ := json.Marshal(rundir.Metric{Step: step, Loss: 1, Eval: &rundir.Evaluation{ZeroShotTop1: &top1, LinearProbeAccuracy: probe}})
	return string(b)
}

// TestWriteReportEvalPlot: a run whose metrics hold evaluations gets
// eval.png, the scores against the step (a step evaluated twice by a
// resumed run keeps its last line, and the final evaluation of
// summary.json ends the curve); a run without them gets none.
func TestWriteReportEvalPlot(t *testing.T) {
	for _, tc := range []struct {
		name    string
		evals   []string
		summary string
		steps   []int64   // the steps plotted (0-based)
		top1    []float64 // zero-shot top-1 at them
	}{
		{name: "no evaluation during training", summary: `{"steps": 30, "eval_seconds": 2, "zero_shot_top1": 0.9}`},
		{name: "evaluations, final in the summary",
			evals:   []string{evalLine(9, 0.2, 0.5), evalLine(19, 0.3, 0.6), evalLine(19, 0.4, 0.7)},
			summary: `{"steps": 30, "eval_seconds": 2, "zero_shot_top1": 0.9, "linear_probe_accuracy": 0.8}`,
			steps:   []int64{9, 19, 29}, top1: []float64{0.2, 0.4, 0.9}},
		{name: "evaluations, no evaluation at the end",
			evals:   []string{evalLine(9, 0.2, 0.5), evalLine(19, 0.3, 0.6)},
			summary: `{"steps": 30, "eval_seconds": 0}`,
			steps:   []int64{9, 19}, top1: []float64{0.2, 0.3}},
		{name: "evaluations, run not finished", evals: []string{evalLine(9, 0.2, 0.5)},
			steps: []int64{9}, top1: []float64{0.2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := t.TempDir()
			var lines []string
			for s := int64(0); s < 30; s++ {
				lines = append(lines, metricLine(s, 5/float64(s+1)))
				for _, e := range tc.evals {
					if strings.Contains(e, fmt.Sprintf(`"step":%d,`, s)) {
						lines = append(lines, e)
					}
				}
			}
			if err := os.WriteFile(rundir.MetricsPath(run), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.summary != "" {
				if err := os.WriteFile(rundir.SummaryPath(run), []byte(tc.summary), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := WriteReport(run, artifactDir(t, filepath.Join("eval-report", strings.ReplaceAll(tc.name, " ", "_"))))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Lines != 30 {
				t.Errorf("%d step lines plotted, want 30 (evaluation lines are not steps)", rep.Lines)
			}
			drawn := slices.Contains(rep.Plots, "eval.png")
			if drawn != (len(tc.steps) > 0) || rep.Evaluations != len(tc.steps) {
				t.Fatalf("plots %v with %d evaluations; want eval.png %v with %d", rep.Plots, rep.Evaluations, len(tc.steps) > 0, len(tc.steps))
			}
			if !drawn {
				if _, err := os.Stat(filepath.Join(rep.Dir, "eval.png")); err == nil {
					t.Error("eval.png written without evaluations")
				}
				return
			}
			f, err := os.Open(filepath.Join(rep.Dir, "eval.png"))
			if err != nil {
				t.Fatal(err)
			}
			cfg, format, err := image.DecodeConfig(f)
			f.Close()
			if err != nil || format != "png" || cfg.Width < 500 || cfg.Height < 200 {
				t.Errorf("eval.png: %s %dx%d %v", format, cfg.Width, cfg.Height, err)
			}
			page, err := os.ReadFile(rep.HTML)
			if err != nil || !strings.Contains(string(page), `<img src="eval.png"`) {
				t.Errorf("report.html does not show eval.png (%v)", err)
			}

			var summary map[string]any
			if tc.summary != "" {
				if err := json.Unmarshal([]byte(tc.summary), &summary); err != nil {
					t.Fatal(err)
				}
			}
			raw, _, err := rundir.ReadMetrics(run)
			if err != nil {
				t.Fatal(err)
			}
			evs := evalHistory(raw, summary)
			spec := evalPlot(evs)
			var names []string
			for _, l := range spec.lines {
				names = append(names, l.name)
			}
			if strings.Join(names, ",") != "zero-shot top-1,linear probe" {
				t.Errorf("eval.png draws %v, want the scores measured: zero-shot top-1, linear probe", names)
			}
			var steps []int64
			var top1 []float64
			for _, m := range evs {
				steps, top1 = append(steps, m.Step), append(top1, spec.lines[0].value(m))
			}
			if !slices.Equal(steps, tc.steps) || !slices.Equal(top1, tc.top1) {
				t.Errorf("zero-shot top-1 %v at steps %v, want %v at %v", top1, steps, tc.top1, tc.steps)
			}
		})
	}
}

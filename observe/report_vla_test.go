package observe

import (
	"image"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infonce/infonce/rundir"
)

// writeVLARun writes a run directory with a few metrics lines and a
// vla_eval.json of three families in separate clusters and one row
// without a family.
func writeVLARun(t *testing.T) string {
	t.Helper()
	run := t.TempDir()
	w, err := rundir.CreateMetrics(run, false)
	if err != nil {
		t.Fatal(err)
	}
	for s := range int64(10) {
		if err := w.Write(rundir.Metric{Step: s, Loss: 3 / float64(s+1), LR: 1e-3, SamplesPerSecond: 100}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var v rundir.VLAEval
	for k := 1; k <= 50; k++ {
		v.RecallAtK.K = append(v.RecallAtK.K, k)
		v.RecallAtK.Action = append(v.RecallAtK.Action, 1-math.Exp(-float64(k)/10))
		v.RecallAtK.Instruction = append(v.RecallAtK.Instruction, math.Min(1, 0.5+float64(k)/20))
	}
	v.PCA.Families = []string{"push-left", "stack", "lift"}
	for i := range 90 {
		f := i % 3
		a := float64(i) * 0.7
		v.PCA.X = append(v.PCA.X, 4*float64(f)+math.Cos(a))
		v.PCA.Y = append(v.PCA.Y, 2*float64(f%2)+math.Sin(a))
		v.PCA.Family = append(v.PCA.Family, f)
	}
	v.PCA.X, v.PCA.Y, v.PCA.Family = append(v.PCA.X, 0), append(v.PCA.Y, 0), append(v.PCA.Family, -1)
	v.PCA.Variance, v.PCA.Total = [2]float64{6, 1.5}, 8
	if err := rundir.WriteVLAEval(run, &v); err != nil {
		t.Fatal(err)
	}
	return run
}

// TestWriteReportVLAPlots: a run with a vla_eval.json gets the retrieval
// curves and the PCA plot as PNGs on the page, after the metrics plots; a
// run without one gets neither, and a broken one is an error.
func TestWriteReportVLAPlots(t *testing.T) {
	run := writeVLARun(t)
	out := artifactDir(t, "report-vla")
	rep, err := WriteReport(run, out)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rep.Plots); n < 2 || rep.Plots[n-2] != RecallCurvesPlot || rep.Plots[n-1] != PCAPlot {
		t.Fatalf("plots %v, want %s and %s last", rep.Plots, RecallCurvesPlot, PCAPlot)
	}
	for _, p := range []string{RecallCurvesPlot, PCAPlot} {
		f, err := os.Open(filepath.Join(out, p))
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		cfg, format, err := image.DecodeConfig(f)
		f.Close()
		if err != nil || format != "png" || cfg.Width < 500 || cfg.Height < 200 || st.Size() < 5000 {
			t.Errorf("%s: %s %dx%d, %d bytes, %v", p, format, cfg.Width, cfg.Height, st.Size(), err)
		}
	}
	page, err := os.ReadFile(rep.HTML)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{RecallCurvesPlot, PCAPlot} {
		if !strings.Contains(string(page), `<img src="`+p+`"`) {
			t.Errorf("report.html lacks %s", p)
		}
	}

	if err := os.Remove(rundir.VLAEvalPath(run)); err != nil {
		t.Fatal(err)
	}
	rep, err = WriteReport(run, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(rep.Plots, RecallCurvesPlot) || slices.Contains(rep.Plots, PCAPlot) {
		t.Errorf("plots %v of a run without %s", rep.Plots, rundir.VLAEvalFile)
	}
	if err := os.WriteFile(rundir.VLAEvalPath(run), []byte(`{"pca":{"x":[1]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteReport(run, t.TempDir()); err == nil || !strings.Contains(err.Error(), rundir.VLAEvalFile) {
		t.Errorf("a broken %s: error %v", rundir.VLAEvalFile, err)
	}
}

package observe

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/infonce/infonce/rundir"
)

// MaxMetricLine bounds one line of metrics.jsonl.
const MaxMetricLine = rundir.MaxMetricLine

// ReadMetrics decodes metrics.jsonl (rundir.DecodeMetrics): one
// rundir.Metric per line, blank lines ignored. A last line without its
// newline that does not decode (a run killed while writing it) is dropped
// and counted in truncated; any other line that does not decode is an
// error naming its line number.
func ReadMetrics(r io.Reader) (ms []rundir.Metric, truncated int, err error) {
	return rundir.DecodeMetrics(r)
}

// History orders metrics by step and keeps, for a step recorded more than
// once (a run resumed from a checkpoint older than its last metrics line),
// the line written last.
func History(ms []rundir.Metric) []rundir.Metric { return rundir.History(ms) }

// Report lists what WriteReport wrote.
type Report struct {
	Dir   string   // the report's directory
	HTML  string   // the one-page summary
	Plots []string // PNG files, in the order of the page
	Lines int      // metrics lines plotted (after History)
	// Evaluations counts the evaluations plotted against the step in
	// eval.png: the lines of --eval-every (the last of a step winning) and
	// the final one of summary.json; 0 when the run evaluated only at its
	// end, and eval.png is then not drawn.
	Evaluations int
	Truncated   int // a torn last line that was dropped
}

// plotSpec is one PNG of the report.
type plotSpec struct {
	file, title, y string
	lines          []plotLine
	stacked        bool      // lines are the parts of a sum, drawn as stacked areas
	fraction       bool      // the values are fractions: the y axis spans [0, 1]
	legendW        vg.Length // the legend's width, when there is one (0: legendWidth)
}

type plotLine struct {
	name  string
	color color.Color
	value func(rundir.Metric) float64
}

// phaseColors follow Phases.
var phaseColors = []color.Color{
	color.RGBA{0x4c, 0x72, 0xb0, 0xff}, color.RGBA{0xdd, 0x84, 0x52, 0xff}, color.RGBA{0x55, 0xa8, 0x68, 0xff},
	color.RGBA{0xc4, 0x4e, 0x52, 0xff}, color.RGBA{0x81, 0x72, 0xb3, 0xff}, color.RGBA{0x93, 0x78, 0x60, 0xff},
	color.RGBA{0xda, 0x8b, 0xc3, 0xff}, color.RGBA{0x33, 0x33, 0x33, 0xff},
}

var blue = color.RGBA{0x1f, 0x6f, 0xb2, 0xff}

func reportPlots() []plotSpec {
	one := func(file, title, y string, f func(rundir.Metric) float64) plotSpec {
		return plotSpec{file: file, title: title, y: y, lines: []plotLine{{name: y, color: blue, value: f}}}
	}
	bd := func(f func(rundir.Breakdown) float64) func(rundir.Metric) float64 {
		return func(m rundir.Metric) float64 { return f(m.StepTime) }
	}
	return []plotSpec{
		one("loss.png", "Training loss", "loss", func(m rundir.Metric) float64 { return m.Loss }),
		one("logit_scale.png", "Logit scale s = exp(t)", "logit scale", func(m rundir.Metric) float64 { return m.LogitScale }),
		one("lr.png", "Learning rate", "learning rate", func(m rundir.Metric) float64 { return m.LR }),
		one("throughput.png", "Throughput", "samples/s", func(m rundir.Metric) float64 { return m.SamplesPerSecond }),
		one("grad_norm.png", "Global gradient norm", "gradient norm", func(m rundir.Metric) float64 { return m.GradNorm }),
		{file: "step_time.png", title: "Step-time breakdown (mean per logged window)", y: "ms per step", stacked: true, lines: []plotLine{
			{"data", phaseColors[0], bd(func(b rundir.Breakdown) float64 { return b.DataMS })},
			{"forward", phaseColors[1], bd(func(b rundir.Breakdown) float64 { return b.ForwardMS })},
			{"gather", phaseColors[2], bd(func(b rundir.Breakdown) float64 { return b.GatherMS })},
			{"loss", phaseColors[3], bd(func(b rundir.Breakdown) float64 { return b.LossMS })},
			{"backward", phaseColors[4], bd(func(b rundir.Breakdown) float64 { return b.BackwardMS })},
			{"reduce", phaseColors[5], bd(func(b rundir.Breakdown) float64 { return b.ReduceMS })},
			{"optimizer", phaseColors[6], bd(func(b rundir.Breakdown) float64 { return b.OptimizerMS })},
		}},
	}
}

// WriteReport renders runDir's metrics.jsonl into PNG plots (loss, logit
// scale, learning rate, samples per second, gradient norm, step-time
// breakdown, and eval.png, the evaluation scores against the step, when the
// run evaluated during its training: --eval-every), and, when the run has a
// vla_eval.json, the retrieval curves (RecallCurvesPlot) and the PCA of the
// validation image embeddings by task family (PCAPlot), and report.html, a
// one-page summary with the fields of summary.json (when the run wrote
// one), into outDir ("" : runDir/report).
func WriteReport(runDir, outDir string) (*Report, error) {
	if outDir == "" {
		outDir = filepath.Join(runDir, "report")
	}
	f, err := os.Open(rundir.MetricsPath(runDir))
	if err != nil {
		return nil, fmt.Errorf("report: %w (is %s a run directory?)", err, runDir)
	}
	raw, truncated, err := ReadMetrics(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("report: %s: %w", runDir, err)
	}
	ms := History(raw)
	if len(ms) == 0 {
		return nil, fmt.Errorf("report: %s: metrics.jsonl has no lines yet", runDir)
	}
	var summary map[string]any
	if b, err := os.ReadFile(rundir.SummaryPath(runDir)); err == nil {
		if err := json.Unmarshal(b, &summary); err != nil {
			return nil, fmt.Errorf("report: %s: summary.json: %w", runDir, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("report: %w", err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	rep := &Report{Dir: outDir, Lines: len(ms), Truncated: truncated}
	for _, spec := range reportPlots() {
		if err := drawPlot(spec, ms, filepath.Join(outDir, spec.file)); err != nil {
			return nil, fmt.Errorf("report: %s: %w", spec.file, err)
		}
		rep.Plots = append(rep.Plots, spec.file)
	}
	if evs := evalHistory(raw, summary); len(evs) > 0 {
		spec := evalPlot(evs)
		if err := drawPlot(spec, evs, filepath.Join(outDir, spec.file)); err != nil {
			return nil, fmt.Errorf("report: %s: %w", spec.file, err)
		}
		rep.Plots = append(rep.Plots, spec.file)
		rep.Evaluations = len(evs)
	}
	vla, err := rundir.ReadVLAEval(runDir)
	switch {
	case err == nil:
		for _, p := range []struct {
			file string
			draw func(*rundir.VLAEval, string) error
		}{{RecallCurvesPlot, drawRecallCurves}, {PCAPlot, drawPCA}} {
			if err := p.draw(vla, filepath.Join(outDir, p.file)); err != nil {
				return nil, fmt.Errorf("report: %s: %w", p.file, err)
			}
			rep.Plots = append(rep.Plots, p.file)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("report: %w", err)
	}
	rep.HTML = filepath.Join(outDir, "report.html")
	if err := writeReportHTML(rep.HTML, runDir, summary, rep, ms); err != nil {
		return nil, err
	}
	return rep, nil
}

// evalHistory is the evaluations of a run in step order: the metrics lines
// of --eval-every, the line written last winning for a step evaluated twice
// (a resumed run), then the final evaluation of summary.json after the last
// step. It is empty when no line holds an evaluation: a single point at the
// end is no curve.
func evalHistory(raw []rundir.Metric, summary map[string]any) []rundir.Metric {
	byStep := map[int64]rundir.Metric{}
	for _, m := range rundir.Evaluations(raw) {
		byStep[m.Step] = m
	}
	if len(byStep) == 0 {
		return nil
	}
	if final, ok := finalEvaluation(summary); ok {
		byStep[final.Step] = final
	}
	out := make([]rundir.Metric, 0, len(byStep))
	for _, m := range byStep {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b rundir.Metric) int { return cmp.Compare(a.Step, b.Step) })
	return out
}

// finalEvaluation is the evaluation of summary.json as a metrics line
// after the run's last step, when the run evaluated at its end.
func finalEvaluation(summary map[string]any) (rundir.Metric, bool) {
	if summary == nil {
		return rundir.Metric{}, false
	}
	secs, _ := summary["eval_seconds"].(float64)
	steps, _ := summary["steps"].(float64)
	if secs <= 0 || steps < 1 {
		return rundir.Metric{}, false
	}
	b, err := json.Marshal(summary)
	if err != nil {
		return rundir.Metric{}, false
	}
	var ev rundir.Evaluation
	if err := json.Unmarshal(b, &ev); err != nil {
		return rundir.Metric{}, false
	}
	return rundir.Metric{Step: int64(steps) - 1, Eval: &ev}, true
}

// evalColors tell the scores of eval.png apart.
var evalColors = []color.Color{
	blue, color.RGBA{0xdd, 0x84, 0x52, 0xff}, color.RGBA{0x55, 0xa8, 0x68, 0xff}, color.RGBA{0xc4, 0x4e, 0x52, 0xff},
	color.RGBA{0x81, 0x72, 0xb3, 0xff}, color.RGBA{0x93, 0x78, 0x60, 0xff}, color.RGBA{0xda, 0x8b, 0xc3, 0xff},
}

// evalPlot is the plot of the evaluation scores that are fractions in
// [0, 1] against the step: one line per score that some evaluation of evs
// measured.
func evalPlot(evs []rundir.Metric) plotSpec {
	ptr := func(f func(*rundir.Evaluation) *float64) func(rundir.Metric) float64 {
		return func(m rundir.Metric) float64 {
			if m.Eval == nil || f(m.Eval) == nil {
				return math.NaN()
			}
			return *f(m.Eval)
		}
	}
	probe := func(m rundir.Metric) float64 {
		if m.Eval == nil {
			return math.NaN()
		}
		return m.Eval.LinearProbeAccuracy
	}
	candidates := []struct {
		name  string
		value func(rundir.Metric) float64
	}{
		{"zero-shot top-1", ptr(func(e *rundir.Evaluation) *float64 { return e.ZeroShotTop1 })},
		{"zero-shot top-5", ptr(func(e *rundir.Evaluation) *float64 { return e.ZeroShotTop5 })},
		{"image→text R@1", ptr(func(e *rundir.Evaluation) *float64 { return e.RecallI2TAt1 })},
		{"text→image R@1", ptr(func(e *rundir.Evaluation) *float64 { return e.RecallT2IAt1 })},
		{"action R@1", ptr(func(e *rundir.Evaluation) *float64 { return e.ActionRecallAt1 })},
		{"instruction R@1", ptr(func(e *rundir.Evaluation) *float64 { return e.InstructionRecallAt1 })},
		{"linear probe", probe},
	}
	spec := plotSpec{file: "eval.png", title: "Evaluation during training", y: "score", fraction: true, legendW: 1.5 * vg.Inch}
	for _, c := range candidates {
		measured := slices.ContainsFunc(evs, func(m rundir.Metric) bool { return finite(c.value(m)) })
		if !measured {
			continue
		}
		spec.lines = append(spec.lines, plotLine{name: c.name, color: evalColors[len(spec.lines)%len(evalColors)], value: c.value})
	}
	return spec
}

// Plot size: the PNGs are 7 × 3.6 inches at 96 dpi.
const (
	plotW       = 7 * vg.Inch
	plotH       = 3.6 * vg.Inch
	legendWidth = 1.1 * vg.Inch
)

// drawPlot draws one plot of the metrics against the step, with round
// ticks; the parts of a stacked plot are filled areas with their legend on
// the right.
func drawPlot(spec plotSpec, ms []rundir.Metric, path string) error {
	p := plot.New()
	p.Title.Text = spec.title
	p.X.Label.Text = "step"
	p.Y.Label.Text = spec.y
	p.X.Tick.Marker = plot.TickerFunc(roundTicks)
	p.Y.Tick.Marker = plot.TickerFunc(roundTicks)
	p.Add(plotter.NewGrid())
	legend := plot.NewLegend()
	legend.Top, legend.Left = true, true
	drawn := 0
	below := make([]float64, len(ms)) // the stack so far
	for _, l := range spec.lines {
		xys := make(plotter.XYs, 0, len(ms))
		lower := make(plotter.XYs, 0, len(ms))
		for i, m := range ms {
			v := l.value(m)
			if !finite(v) {
				continue
			}
			x := float64(m.Step + 1)
			if spec.stacked {
				lower = append(lower, plotter.XY{X: x, Y: below[i]})
				v += below[i]
				below[i] = v
			}
			xys = append(xys, plotter.XY{X: x, Y: v})
		}
		if len(xys) == 0 {
			continue
		}
		drawn++
		if spec.stacked {
			ring := append(slices.Clone(xys), reversed(lower)...)
			poly, err := plotter.NewPolygon(ring)
			if err != nil {
				return err
			}
			poly.Color = l.color
			poly.LineStyle.Width = 0
			p.Add(poly)
			legend.Add(l.name, poly)
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		line.Color, line.Width = l.color, vg.Points(1.5)
		points.Color, points.Radius = l.color, vg.Points(1.5)
		p.Add(line)
		if len(spec.lines) > 1 {
			legend.Add(l.name, line)
		}
		if len(xys) <= 60 {
			p.Add(points) // few lines: show where the measurements are
		}
	}
	if drawn == 0 {
		p.Title.Text += " (no finite values)"
	}
	roundAxis(&p.Y)
	if spec.stacked && p.Y.Min > 0 {
		p.Y.Min = 0
	}
	if spec.fraction {
		p.Y.Min, p.Y.Max = min(p.Y.Min, 0), max(p.Y.Max, 1)
	}
	img := vgimg.New(plotW, plotH)
	dc := draw.New(img)
	if spec.stacked || len(spec.lines) > 1 {
		lw := cmp.Or(spec.legendW, legendWidth)
		p.Draw(draw.Crop(dc, 0, -lw, 0, 0))
		legend.Draw(draw.Crop(dc, plotW-lw+vg.Points(8), 0, 0, -vg.Points(30)))
	} else {
		p.Draw(dc)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func reversed(xys plotter.XYs) plotter.XYs {
	out := slices.Clone(xys)
	slices.Reverse(out)
	return out
}

// roundTicks labels round values (1, 2 or 5 · 10^k apart) inside [lo, hi].
func roundTicks(lo, hi float64) []plot.Tick {
	ticks, step := niceTicks(lo, hi, 6)
	var out []plot.Tick
	for _, t := range ticks {
		if t >= lo-step*1e-9 && t <= hi+step*1e-9 {
			out = append(out, plot.Tick{Value: t, Label: tickLabel(t, step)})
		}
		if m := t + step/2; m > lo && m < hi {
			out = append(out, plot.Tick{Value: m}) // a minor tick
		}
	}
	return out
}

// roundAxis widens an axis to the round ticks around its data.
func roundAxis(a *plot.Axis) {
	if !(a.Max >= a.Min) || !finite(a.Min) || !finite(a.Max) {
		return
	}
	ticks, _ := niceTicks(a.Min, a.Max, 6) // a constant is widened by 10 %
	a.Min, a.Max = ticks[0], ticks[len(ticks)-1]
}

// field is one row of the summary table.
type field struct{ Key, Value string }

// flatten lists a decoded JSON object's fields with dotted keys for nested
// objects, in key order.
func flatten(prefix string, v any, out *[]field) {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			flatten(key, x[k], out)
		}
	case float64:
		*out = append(*out, field{prefix, strconv.FormatFloat(x, 'g', 6, 64)})
	case nil:
		*out = append(*out, field{prefix, "–"})
	default:
		b, _ := json.Marshal(x)
		s := string(b)
		if str, ok := x.(string); ok {
			s = str
		}
		*out = append(*out, field{prefix, s})
	}
}

type reportView struct {
	RunDir    string
	Generated string
	Headline  []field
	Fields    []field
	Config    []field
	Plots     []string
	Lines     int
	Truncated int
	FirstStep int64
	LastStep  int64
}

// headline are the summary fields shown first, in this order.
var headline = []string{"objective", "data", "workers", "steps", "samples", "final_loss", "final_logit_scale",
	"samples_per_second", "train_seconds", "wall_seconds", "zero_shot_top1", "linear_probe_accuracy"}

func writeReportHTML(path, runDir string, summary map[string]any, rep *Report, ms []rundir.Metric) error {
	v := reportView{RunDir: runDir, Generated: time.Now().UTC().Format("2006-01-02 15:04 UTC"), Plots: rep.Plots,
		Lines: rep.Lines, Truncated: rep.Truncated, FirstStep: ms[0].Step + 1, LastStep: ms[len(ms)-1].Step + 1}
	if summary != nil {
		cfg := summary["config"]
		rest := map[string]any{}
		for k, val := range summary {
			if k != "config" {
				rest[k] = val
			}
		}
		var all []field
		flatten("", rest, &all)
		shown := map[string]bool{}
		for _, k := range headline {
			for _, f := range all {
				if f.Key == k {
					v.Headline = append(v.Headline, f)
					shown[k] = true
				}
			}
		}
		for _, f := range all {
			if !shown[f.Key] {
				v.Fields = append(v.Fields, f)
			}
		}
		if cfg != nil {
			flatten("", cfg, &v.Config)
		}
	}
	var b bytes.Buffer
	if err := reportTemplate.Execute(&b, v); err != nil {
		return fmt.Errorf("report: html: %w", err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

var reportTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>infonce report · {{.RunDir}}</title>
<style>
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 20px 28px; color: #1d232a; max-width: 1500px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 22px 0 8px; }
.sub { color: #5b6670; margin-bottom: 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid #dde2e7; border-radius: 6px; padding: 8px 14px; }
.card .k { color: #5b6670; font-size: 12px; }
.card .v { font-size: 17px; font-variant-numeric: tabular-nums; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 12px; }
.plots img { width: 100%; border: 1px solid #dde2e7; border-radius: 6px; }
table { border-collapse: collapse; }
td { padding: 2px 12px 2px 0; border-bottom: 1px solid #eceff2; font-variant-numeric: tabular-nums; }
td.k { color: #5b6670; }
.cols { display: flex; flex-wrap: wrap; gap: 40px; }
</style>
</head>
<body>
<h1>infonce run report</h1>
<div class="sub">{{.RunDir}} · steps {{.FirstStep}}–{{.LastStep}}, {{.Lines}} metrics lines{{if .Truncated}} ({{.Truncated}} torn last line dropped){{end}} · generated {{.Generated}}</div>
{{if .Headline}}<div class="cards">{{range .Headline}}<div class="card"><div class="k">{{.Key}}</div><div class="v">{{.Value}}</div></div>{{end}}</div>{{else}}<p>No summary.json: the run has not finished.</p>{{end}}
<h2>Curves</h2>
<div class="plots">{{range .Plots}}<img src="{{.}}" alt="{{.}}">{{end}}</div>
<div class="cols">
{{if .Fields}}<div><h2>Summary</h2><table id="summary">{{range .Fields}}<tr><td class="k">{{.Key}}</td><td>{{.Value}}</td></tr>{{end}}</table></div>{{end}}
{{if .Config}}<div><h2>Configuration</h2><table id="config">{{range .Config}}<tr><td class="k">{{.Key}}</td><td>{{.Value}}</td></tr>{{end}}</table></div>{{end}}
</div>
</body>
</html>
`))

// The files of the VLA plots of a report.
const (
	RecallCurvesPlot = "recall_at_k.png"
	PCAPlot          = "pca_families.png"
)

// familyColors are the colours of the task families in PCAPlot (a family
// beyond them reuses them in order); unknownColor marks a row without one.
var (
	familyColors = []color.Color{
		color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xff, 0x7f, 0x0e, 0xff}, color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
		color.RGBA{0xd6, 0x27, 0x28, 0xff}, color.RGBA{0x94, 0x67, 0xbd, 0xff}, color.RGBA{0x8c, 0x56, 0x4b, 0xff},
		color.RGBA{0xe3, 0x77, 0xc2, 0xff}, color.RGBA{0xbc, 0xbd, 0x22, 0xff}, color.RGBA{0x17, 0xbe, 0xcf, 0xff},
		color.RGBA{0x33, 0x33, 0x33, 0xff},
	}
	unknownColor = color.RGBA{0xaa, 0xaa, 0xaa, 0xff}
)

// drawRecallCurves draws R@k against k of the action and the instruction
// retrieval of v.
func drawRecallCurves(v *rundir.VLAEval, path string) error {
	p := plot.New()
	p.Title.Text = "VLA retrieval: recall@k on the validation set"
	p.X.Label.Text = "k"
	p.Y.Label.Text = "recall@k"
	p.X.Tick.Marker = plot.TickerFunc(roundTicks)
	p.Y.Tick.Marker = plot.TickerFunc(roundTicks)
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.XOffs, p.Legend.YOffs = -vg.Points(8), vg.Points(8)
	for _, c := range []struct {
		name  string
		color color.Color
		ys    []float64
	}{{"action chunk ← (image, instruction)", familyColors[0], v.RecallAtK.Action}, {"instruction ← (image, action chunk)", familyColors[1], v.RecallAtK.Instruction}} {
		var xys plotter.XYs
		for i, y := range c.ys {
			if finite(y) {
				xys = append(xys, plotter.XY{X: float64(v.RecallAtK.K[i]), Y: y})
			}
		}
		if len(xys) == 0 {
			continue
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		line.Color, line.Width = c.color, vg.Points(1.5)
		p.Add(line)
		p.Legend.Add(c.name, line)
	}
	p.Y.Min, p.Y.Max = 0, 1
	if len(v.RecallAtK.K) == 0 {
		p.Title.Text += " (no values)"
	}
	return savePlot(p, path)
}

// drawPCA draws the validation embeddings' projection on their first two
// principal components, one colour per task family, the legend on the
// right.
func drawPCA(v *rundir.VLAEval, path string) error {
	p := plot.New()
	p.Title.Text = "Validation image embeddings, first two principal components"
	if v.PCA.Total > 0 {
		p.Title.Text += fmt.Sprintf(" (%.0f%% of the variance)", 100*(v.PCA.Variance[0]+v.PCA.Variance[1])/v.PCA.Total)
	}
	p.X.Label.Text = "PC 1"
	p.Y.Label.Text = "PC 2"
	p.X.Tick.Marker = plot.TickerFunc(roundTicks)
	p.Y.Tick.Marker = plot.TickerFunc(roundTicks)
	p.Add(plotter.NewGrid())
	legend := plot.NewLegend()
	legend.Top, legend.Left = true, true
	groups := map[int]plotter.XYs{}
	for i, f := range v.PCA.Family {
		if finite(v.PCA.X[i]) && finite(v.PCA.Y[i]) {
			groups[f] = append(groups[f], plotter.XY{X: v.PCA.X[i], Y: v.PCA.Y[i]})
		}
	}
	for f := -1; f < len(v.PCA.Families); f++ {
		xys := groups[f]
		if len(xys) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(xys)
		if err != nil {
			return err
		}
		name, c := "unknown", color.Color(unknownColor)
		if f >= 0 {
			name, c = v.PCA.Families[f], familyColors[f%len(familyColors)]
		}
		sc.GlyphStyle.Color, sc.GlyphStyle.Radius, sc.GlyphStyle.Shape = c, vg.Points(1.8), draw.CircleGlyph{}
		p.Add(sc)
		legend.Add(name, sc)
	}
	if len(groups) == 0 {
		p.Title.Text = "Validation image embeddings (no points)"
	}
	roundAxis(&p.X)
	roundAxis(&p.Y)
	img := vgimg.New(plotW, plotH)
	dc := draw.New(img)
	p.Draw(draw.Crop(dc, 0, -legendWidth, 0, 0))
	legend.Draw(draw.Crop(dc, plotW-legendWidth+vg.Points(8), 0, 0, -vg.Points(30)))
	return writePNG(img, path)
}

// savePlot draws p alone at the report's size into a PNG at path.
func savePlot(p *plot.Plot, path string) error {
	img := vgimg.New(plotW, plotH)
	p.Draw(draw.New(img))
	return writePNG(img, path)
}

func writePNG(img *vgimg.Canvas, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

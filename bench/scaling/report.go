package scaling

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/infonce/infonce/rundir"
)

// Breakdown is the mean step time of rank 0 split into phases, in
// milliseconds, as summary.json reports it (rundir.Breakdown).
type Breakdown rundir.Breakdown

// Phase is one named part of a Breakdown.
type Phase struct {
	Name string
	MS   float64
}

// Phases lists the breakdown in step order, with the time of the step
// outside every phase (logging, checksums, the progress line) as "other".
func (b Breakdown) Phases(stepMS float64) []Phase {
	return []Phase{
		{"data", b.DataMS}, {"forward", b.ForwardMS}, {"gather", b.GatherMS}, {"loss", b.LossMS},
		{"backward", b.BackwardMS}, {"all-reduce", b.ReduceMS}, {"optimizer", b.OptimizerMS},
		{"other", math.Max(0, stepMS-b.TotalMS)},
	}
}

// jobConfig is the part of a job's configuration the benchmark reads.
type jobConfig struct {
	Objective string `json:"objective"`
	Batch     int    `json:"batch"`
	Dim       int    `json:"dim"`
}

// summary is a job's summary.json.
type summary = rundir.Summary[jobConfig]

// readSummary reads dir/summary.json.
func readSummary(dir string) (*summary, error) {
	s, err := rundir.ReadSummaryOf[jobConfig](dir)
	if err != nil {
		return nil, fmt.Errorf("read the job's summary: %w", err)
	}
	if s.Steps < 1 || s.SamplesPerSecond <= 0 || s.Config.Batch < 1 {
		return nil, fmt.Errorf("%s: no training measured (steps %d, %.3g samples/s)", rundir.SummaryPath(dir), s.Steps, s.SamplesPerSecond)
	}
	return s, nil
}

// steadyRate is a job's throughput once warmed up: the samples of the
// steps completed between the first metrics.jsonl line at or after a tenth
// of the run and the last line, over the lines' clock (rank 0's, at the
// end of each logged step). The first steps (buffers allocated, pages
// touched, kernels' scratch packed) and the end of the run (the final
// checkpoint) fall outside. ok is false when fewer than two such lines
// exist.
func steadyRate(dir string, steps int64, batch int) (rate float64, ok bool) {
	ms, _, err := rundir.ReadMetricsSkipping(dir)
	if err != nil {
		return 0, false
	}
	var first, last rundir.Metric
	found := false
	for _, l := range ms {
		if l.Time <= 0 {
			continue
		}
		switch {
		case !found && l.Step+1 >= max(steps/10, 1):
			first, last, found = l, l, true
		case found && l.Step > last.Step:
			last = l
		}
	}
	if !found || last.Step <= first.Step || last.Time <= first.Time {
		return 0, false
	}
	return float64((last.Step-first.Step)*int64(batch)) / (last.Time - first.Time), true
}

// readParams returns the number of parameters from the newest checkpoint's
// manifest in dir/checkpoints (the raw size of params.zst over 4 bytes), or 0.
func readParams(dir string) int64 {
	manifests, _ := filepath.Glob(filepath.Join(rundir.CheckpointDir(dir), "*", "manifest.json"))
	slices.Sort(manifests)
	for i := len(manifests) - 1; i >= 0; i-- {
		b, err := os.ReadFile(manifests[i])
		if err != nil {
			continue
		}
		var m struct {
			Files []struct {
				Name    string `json:"name"`
				RawSize int64  `json:"raw_size"`
			} `json:"files"`
		}
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		for _, f := range m.Files {
			if strings.HasPrefix(f.Name, "params.") {
				return f.RawSize / 4
			}
		}
	}
	return 0
}

// Run is one measured job.
type Run struct {
	Dir              string  `json:"dir"`
	SamplesPerSecond float64 `json:"samples_per_second"` // once warmed up (steadyRate), else the summary's
	// RunSamplesPerSecond is summary.json's: the whole run, its first
	// steps and last checkpoint included.
	RunSamplesPerSecond float64   `json:"run_samples_per_second"`
	TrainSeconds        float64   `json:"train_seconds"`
	StepMS              float64   `json:"step_ms"` // B / samples_per_second: the wall time of a step
	StepTime            Breakdown `json:"step_time"`
	WallSeconds         float64   `json:"wall_seconds"`
	CPUSeconds          float64   `json:"cpu_seconds"`
	CoresBusy           float64   `json:"cores_busy"` // cpu_seconds / wall_seconds
}

// Point is one worker count: the median of its repeats.
type Point struct {
	Workers            int       `json:"workers"`
	Threads            int       `json:"threads_per_worker"`
	Oversubscribed     bool      `json:"oversubscribed"` // workers × threads exceeds the machine's cores
	SamplesPerSecond   float64   `json:"samples_per_second"`
	MinSamplesPerSec   float64   `json:"min_samples_per_second"`
	MaxSamplesPerSec   float64   `json:"max_samples_per_second"`
	Efficiency         float64   `json:"efficiency"`
	EfficiencyCI95     []float64 `json:"efficiency_ci95,omitempty"` // 95 % bootstrap interval (setEfficiencyIntervals); absent under MinRoundsForInterval rounds
	Speedup            float64   `json:"speedup"`
	StepMS             float64   `json:"step_ms"`
	StepTime           Breakdown `json:"step_time"` // of the median run
	CoresBusy          float64   `json:"cores_busy"`
	Runs               []Run     `json:"runs"`
	MedianRun          int       `json:"median_run"`
	EfficiencyBaseline int       `json:"efficiency_baseline_workers"`
}

// Report is the benchmark's result, written as scaling.json.
type Report struct {
	Date      time.Time `json:"date"`
	Command   string    `json:"command"`
	Machine   Machine   `json:"machine"`
	Network   string    `json:"network"`                        // "loopback" or the limits of each worker's link
	LinkBPS   float64   `json:"link_bits_per_second,omitempty"` // the rate limit of each worker's link, 0 for none
	Objective string    `json:"objective"`
	Batch     int       `json:"batch"`
	Dim       int       `json:"dim"`
	Params    int64     `json:"params"`
	Steps     int64     `json:"steps"`
	Repeat    int       `json:"repeat"`
	TrainArgs []string  `json:"train_args"`
	Nice      int       `json:"nice,omitempty"` // niceness the jobs ran at
	Points    []Point   `json:"points"`
	Model     *Model    `json:"model,omitempty"`
}

// Machine describes where the benchmark ran.
type Machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	// LoadStart and LoadEnd are the 1-minute load averages when the
	// benchmark started and ended: other work on the machine shows there.
	LoadStart float64 `json:"load_avg_start,omitempty"`
	LoadEnd   float64 `json:"load_avg_end,omitempty"`
}

// Efficiency is the scaling efficiency of n workers against a baseline of
// n0 workers: E = X(n) · n0 / (n · X(n0)), with X the throughput in samples
// per second. With n0 = 1 it is the field's X(n) / (n · X(1)).
func Efficiency(n int, xn float64, n0 int, x0 float64) float64 {
	if n <= 0 || n0 <= 0 || x0 <= 0 {
		return 0
	}
	return xn * float64(n0) / (float64(n) * x0)
}

// medianIndex returns the index of the median of xs (the lower median for
// an even count).
func medianIndex(xs []float64) int {
	idx := make([]int, len(xs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case xs[a] < xs[b]:
			return -1
		case xs[a] > xs[b]:
			return 1
		}
		return 0
	})
	return idx[(len(idx)-1)/2]
}

// newPoint summarises the runs of one worker count.
func newPoint(workers, threads, cores int, runs []Run) (Point, error) {
	if len(runs) == 0 {
		return Point{}, errors.New("no runs")
	}
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = r.SamplesPerSecond
	}
	m := medianIndex(xs)
	p := Point{
		Workers:          workers,
		Threads:          threads,
		Oversubscribed:   cores > 0 && workers*threads > cores,
		SamplesPerSecond: runs[m].SamplesPerSecond,
		MinSamplesPerSec: slices.Min(xs),
		MaxSamplesPerSec: slices.Max(xs),
		StepMS:           runs[m].StepMS,
		StepTime:         runs[m].StepTime,
		CoresBusy:        runs[m].CoresBusy,
		Runs:             runs,
		MedianRun:        m,
	}
	return p, nil
}

// setEfficiencies fills Efficiency and Speedup against the first point.
func setEfficiencies(ps []Point) {
	if len(ps) == 0 {
		return
	}
	b := ps[0]
	for i := range ps {
		ps[i].EfficiencyBaseline = b.Workers
		ps[i].Efficiency = Efficiency(ps[i].Workers, ps[i].SamplesPerSecond, b.Workers, b.SamplesPerSecond)
		ps[i].Speedup = ps[i].SamplesPerSecond / b.SamplesPerSecond
	}
}

// WriteTable prints the report as a table.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "# %s, B=%d, d=%d, %d parameters, %d steps, %d repeat(s), network %s\n", r.Objective, r.Batch, r.Dim, r.Params, r.Steps, r.Repeat, r.Network)
	if r.Nice != 0 {
		fmt.Fprintf(w, "# jobs ran at niceness %d\n", r.Nice)
	}
	if len(r.TrainArgs) > 0 {
		fmt.Fprintf(w, "# training flags: %s\n", strings.Join(r.TrainArgs, " "))
	}
	fmt.Fprintf(w, "# %s, %d cores, %s, load average %.1f at the start, %.1f at the end\n", r.Machine.CPU, r.Machine.Cores, r.Date.UTC().Format(time.RFC3339), r.Machine.LoadStart, r.Machine.LoadEnd)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workers\tthreads\tsamples/s\tmin\tmax\tspeedup\tefficiency\t95% CI\tstep ms\tdata\tforward\tgather\tloss\tbackward\tall-reduce\toptimizer\tother\tcores busy\t")
	for _, p := range r.Points {
		note := ""
		if p.Oversubscribed {
			note = "*"
		}
		ci := "–"
		if len(p.EfficiencyCI95) == 2 {
			ci = fmt.Sprintf("%.3f–%.3f", p.EfficiencyCI95[0], p.EfficiencyCI95[1])
		}
		fmt.Fprintf(tw, "%d%s\t%d\t%.0f\t%.0f\t%.0f\t%.2f\t%.3f\t%s\t%.1f\t", p.Workers, note, p.Threads, p.SamplesPerSecond, p.MinSamplesPerSec, p.MaxSamplesPerSec, p.Speedup, p.Efficiency, ci, p.StepMS)
		for _, ph := range p.StepTime.Phases(p.StepMS) {
			fmt.Fprintf(tw, "%.1f\t", ph.MS)
		}
		fmt.Fprintf(tw, "%.2f\t\n", p.CoresBusy)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if slices.ContainsFunc(r.Points, func(p Point) bool { return p.Oversubscribed }) {
		fmt.Fprintf(w, "* workers × threads exceed the %d cores: the workers share cores, so compute slows down and the all-reduce waits for descheduled ranks.\n", r.Machine.Cores)
	}
	if len(r.Points) > 0 && len(r.Points[0].EfficiencyCI95) == 2 {
		fmt.Fprintf(w, "95%% CI: percentile bootstrap of the efficiency over the %d rounds of repeats (%d resamples)\n", len(r.Points[0].Runs), Resamples)
	}
	if len(r.Points) > 0 && r.Points[0].Workers != 1 {
		fmt.Fprintf(w, "efficiency is against %d workers: X(n)·%d / (n·X(%d))\n", r.Points[0].Workers, r.Points[0].Workers, r.Points[0].Workers)
	}
	return nil
}

// csvHeader is the first line of scaling.csv.
var csvHeader = []string{"workers", "threads_per_worker", "oversubscribed", "samples_per_second", "min_samples_per_second", "max_samples_per_second",
	"speedup", "efficiency", "step_ms", "data_ms", "forward_ms", "gather_ms", "loss_ms", "backward_ms", "reduce_ms", "optimizer_ms", "other_ms", "cores_busy", "runs",
	"efficiency_ci95_low", "efficiency_ci95_high"}

// WriteCSV writes one line per worker count.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', 6, 64) }
	for _, p := range r.Points {
		rec := []string{strconv.Itoa(p.Workers), strconv.Itoa(p.Threads), strconv.FormatBool(p.Oversubscribed), f(p.SamplesPerSecond), f(p.MinSamplesPerSec), f(p.MaxSamplesPerSec),
			f(p.Speedup), f(p.Efficiency), f(p.StepMS)}
		for _, ph := range p.StepTime.Phases(p.StepMS) {
			rec = append(rec, f(ph.MS))
		}
		rec = append(rec, f(p.CoresBusy), strconv.Itoa(len(p.Runs)))
		if len(p.EfficiencyCI95) == 2 {
			rec = append(rec, f(p.EfficiencyCI95[0]), f(p.EfficiencyCI95[1]))
		} else {
			rec = append(rec, "", "")
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes the whole report.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadReport decodes a report written by WriteJSON.
func ReadReport(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode scaling report: %w", err)
	}
	return &r, nil
}

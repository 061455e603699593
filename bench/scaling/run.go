package scaling

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/infonce/infonce/rundir"
)

// Launcher runs one training job to completion; the job writes its
// summary.json into Job.Out.
type Launcher interface {
	Launch(ctx context.Context, j Job) (Usage, error)
}

// threadsFor is the GOMAXPROCS of each of n workers: the option, or the
// training command's default of cores / n.
func threadsFor(o Options, n int) int {
	if o.Threads > 0 {
		return o.Threads
	}
	return max(1, o.Cores/n)
}

// Measure runs o.Repeat jobs at each worker count of o.Workers and
// summarises them. Jobs write into o.Out/jobs/w<N>-r<R>.
func Measure(ctx context.Context, o Options, l Launcher, logger *slog.Logger) (*Report, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rep := &Report{
		Date:      time.Now().UTC(),
		Machine:   thisMachine(o.Cores),
		Network:   "loopback",
		Steps:     o.Steps,
		Repeat:    o.Repeat,
		TrainArgs: o.TrainArgs,
		Nice:      o.Nice,
	}
	if o.Net != nil {
		rep.Network = o.Net.String() + " per worker (network namespaces)"
		rep.LinkBPS = o.Net.RateBitsPerSecond
	}
	// The repeats go round the worker counts (1, 2, 4, 1, 2, 4, ...), so
	// that a change in the machine's load falls on every count alike.
	runs := make([][]Run, len(o.Workers))
	for r := range o.Repeat {
		for i, n := range o.Workers {
			threads := threadsFor(o, n)
			dir := filepath.Join(o.Out, "jobs", fmt.Sprintf("w%d-r%d", n, r))
			if err := os.RemoveAll(dir); err != nil {
				return nil, fmt.Errorf("clear %s: %w", dir, err)
			}
			job := Job{Workers: n, Threads: o.Threads, Steps: o.Steps, Out: dir, TrainArgs: o.TrainArgs}
			jctx, cancel := context.WithTimeout(ctx, o.Timeout)
			u, err := l.Launch(jctx, job)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("%d worker(s), repeat %d (output in %s): %w", n, r+1, dir, err)
			}
			s, err := readSummary(dir)
			if err != nil {
				return nil, fmt.Errorf("%d worker(s), repeat %d: %w", n, r+1, err)
			}
			if s.Workers != n {
				return nil, fmt.Errorf("%d worker(s), repeat %d: the job trained with %d workers", n, r+1, s.Workers)
			}
			rate := s.SamplesPerSecond
			if steady, ok := steadyRate(dir, s.Steps, s.Config.Batch); ok {
				rate = steady
			}
			run := Run{
				Dir: dir, SamplesPerSecond: rate, RunSamplesPerSecond: s.SamplesPerSecond, TrainSeconds: s.TrainSeconds,
				StepMS: 1e3 * float64(s.Config.Batch) / rate, StepTime: Breakdown(s.StepTime),
				WallSeconds: u.WallSeconds, CPUSeconds: u.CPUSeconds,
			}
			if u.WallSeconds > 0 {
				run.CoresBusy = u.CPUSeconds / u.WallSeconds
			}
			// The thread limit must hold, the in-process 1-worker run
			// included: more busy cores than n × threads (with a margin
			// for the kernel's own time) means it did not.
			if limit := float64(n*threads) * 1.15; o.Threads > 0 && run.CoresBusy > limit+0.1 {
				return nil, fmt.Errorf("%d worker(s) at %d thread(s) kept %.2f cores busy: the thread limit was not applied", n, threads, run.CoresBusy)
			}
			if rep.Objective == "" {
				rep.Objective, rep.Batch, rep.Dim = s.Config.Objective, s.Config.Batch, s.Config.Dim
				rep.Params = readParams(dir)
			}
			// The job's checkpoints are of no use to the benchmark; its
			// summary.json and metrics.jsonl stay.
			if err := os.RemoveAll(rundir.CheckpointDir(dir)); err != nil {
				return nil, fmt.Errorf("remove the checkpoints of %s: %w", dir, err)
			}
			logger.Info("job", "workers", n, "repeat", r+1, "samples_per_second", fmt.Sprintf("%.0f", s.SamplesPerSecond), "cores_busy", fmt.Sprintf("%.2f", run.CoresBusy))
			runs[i] = append(runs[i], run)
		}
	}
	for i, n := range o.Workers {
		p, err := newPoint(n, threadsFor(o, n), o.Cores, runs[i])
		if err != nil {
			return nil, err
		}
		rep.Points = append(rep.Points, p)
	}
	setEfficiencies(rep.Points)
	rep.Machine.LoadEnd = loadAverage()
	return rep, nil
}

// FitReport fits the analytic model to the points of one or more reports
// of the same model (see Fit); the compute constants are for the first
// report's threads per worker.
func FitReport(reps ...*Report) (Model, error) {
	if len(reps) == 0 {
		return Model{}, errors.New("fit: no report")
	}
	r := reps[0]
	m := Model{
		Objective: r.Objective, Batch: r.Batch, Dim: r.Dim, Params: r.Params,
		GradBytes: 4 * float64(r.Params), GatherBytes: GatheredBytes(r.Objective, r.Batch, r.Dim),
	}
	if len(r.Points) > 0 {
		m.ThreadsPerWorker = r.Points[0].Threads
	}
	var obs []Observation
	for _, q := range reps {
		if q.Objective != r.Objective || q.Batch != r.Batch || q.Dim != r.Dim || q.Params != r.Params {
			return m, fmt.Errorf("fit: reports of different models (%s B=%d d=%d P=%d and %s B=%d d=%d P=%d)",
				r.Objective, r.Batch, r.Dim, r.Params, q.Objective, q.Batch, q.Dim, q.Params)
		}
		for _, p := range q.Points {
			if p.Threads != m.ThreadsPerWorker {
				continue
			}
			obs = append(obs, Observation{Workers: p.Workers, Oversubscribed: p.Oversubscribed, LinkBPS: q.LinkBPS, StepMS: p.StepMS, StepTime: p.StepTime})
		}
	}
	return Fit(m, obs)
}

// PredictWorkers and PredictRates are the worker counts and link rates of
// the model's printed predictions.
var (
	PredictWorkers = []int{16, 32, 64, 128, 256}
	PredictRates   = []float64{10e9, 25e9, 100e9}
)

// Main runs 'infonce bench scaling': binary is the infonce executable the
// jobs re-execute.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, binary string) error {
	o, err := ParseArgs(args, runtime.NumCPU(), stderr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return fmt.Errorf("--out %s: %w", o.Out, err)
	}
	if len(o.Fit) > 0 {
		return fitMain(o, stdout)
	}
	if len(o.From) > 0 {
		reps, err := readReports("--from", o.From)
		if err != nil {
			return err
		}
		rep := reps[0]
		if len(reps) > 1 {
			if rep, err = Pool(reps...); err != nil {
				return fmt.Errorf("--from: %w", err)
			}
		}
		return finish(rep, o.Out, stdout, slog.New(slog.NewTextHandler(stderr, nil)))
	}
	jobLog, err := os.Create(filepath.Join(o.Out, "jobs.log"))
	if err != nil {
		return fmt.Errorf("--out %s: %w", o.Out, err)
	}
	defer jobLog.Close()
	var l Launcher = ExecLauncher{Binary: binary, Stdout: jobLog, Stderr: jobLog, Nice: o.Nice}
	if o.Net != nil {
		if err := CheckNetns(); err != nil {
			return fmt.Errorf("--netem: %w", err)
		}
		if o.Subnet == "" {
			o.Subnet = DefaultSubnet()
		}
		l = NetnsLauncher{Binary: binary, Limits: *o.Net, Subnet: o.Subnet, Stdout: jobLog, Stderr: jobLog, Log: jobLog, Nice: o.Nice}
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	logger.Info("scaling benchmark", "workers", fmt.Sprint(o.Workers), "steps", o.Steps, "repeat", o.Repeat, "out", o.Out, "job_output", jobLog.Name())
	rep, err := Measure(ctx, o, l, logger)
	if err != nil {
		return err
	}
	rep.Command = "infonce bench scaling " + strings.Join(quoteArgs(args), " ")
	return finish(rep, o.Out, stdout, logger)
}

// fitMain fits the model across the reports of o.Fit, prints it with its
// predictions and writes it to model.json in o.Out.
func fitMain(o Options, stdout io.Writer) error {
	reps, err := readReports("--fit", o.Fit)
	if err != nil {
		return err
	}
	m, err := FitReport(reps...)
	if err != nil {
		return err
	}
	fitted := m.HopMS
	if o.HopMS >= 0 {
		m.HopMS = o.HopMS
	}
	f, err := os.Create(filepath.Join(o.Out, "model.json"))
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	enc.SetIndent("", "  ")
	out := struct {
		Reports     []string     `json:"reports"`
		FittedHopMS float64      `json:"fitted_hop_ms"` // λ of the fit; Model.HopMS is the one predicted with
		Model       Model        `json:"model"`
		Predictions []Prediction `json:"predictions"`
	}{Reports: o.Fit, FittedHopMS: fitted, Model: m}
	for _, r := range PredictRates {
		for _, n := range PredictWorkers {
			out.Predictions = append(out.Predictions, m.Predict(n, r))
		}
	}
	if err := errors.Join(enc.Encode(out), f.Close()); err != nil {
		return fmt.Errorf("write model.json: %w", err)
	}
	if o.HopMS >= 0 {
		fmt.Fprintf(stdout, "λ set to %.3f ms by --hop-ms (fitted: %.3f ms)\n", o.HopMS, fitted)
	}
	return m.WriteModel(stdout, PredictWorkers, PredictRates)
}

// readReports reads the scaling.json files given to the flag name.
func readReports(name string, paths []string) ([]*Report, error) {
	var reps []*Report
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		r, err := ReadReport(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", name, path, err)
		}
		reps = append(reps, r)
	}
	return reps, nil
}

// finish fits the model, sets the efficiencies' intervals, writes the
// outputs into dir and prints the table and the model's predictions.
func finish(rep *Report, dir string, stdout io.Writer, logger *slog.Logger) error {
	setEfficiencyIntervals(rep.Points)
	rep.Model = nil
	if m, err := FitReport(rep); err == nil {
		rep.Model = &m
	} else {
		logger.Info("no model fitted", "reason", err)
	}
	if err := WriteOutputs(rep, dir); err != nil {
		return err
	}
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if rep.Model != nil {
		fmt.Fprintln(stdout)
		return rep.Model.WriteModel(stdout, PredictWorkers, PredictRates)
	}
	return nil
}

// WriteOutputs writes scaling.txt, scaling.csv, scaling.json and the plots
// into dir.
func WriteOutputs(rep *Report, dir string) error {
	write := func(name string, fn func(io.Writer) error) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", f.Name(), err)
		}
		return f.Close()
	}
	txt := func(w io.Writer) error {
		if err := rep.WriteTable(w); err != nil {
			return err
		}
		if rep.Model != nil {
			fmt.Fprintln(w)
			return rep.Model.WriteModel(w, PredictWorkers, PredictRates)
		}
		return nil
	}
	if err := errors.Join(write("scaling.txt", txt), write("scaling.csv", rep.WriteCSV), write("scaling.json", rep.WriteJSON)); err != nil {
		return err
	}
	return rep.WritePlots(dir)
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \"'") {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return out
}

// thisMachine describes the machine from /proc/cpuinfo where there is one.
func thisMachine(cores int) Machine {
	m := Machine{CPU: runtime.GOARCH, Cores: cores, GoVersion: runtime.Version(), OS: runtime.GOOS}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	m.LoadStart = loadAverage()
	return m
}

// loadAverage is the 1-minute load average, or 0 where there is none.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// IsHelp reports whether err is the -h request.
func IsHelp(err error) bool { return errors.Is(err, flag.ErrHelp) }

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sort"

	"github.com/infonce/infonce/internal/affinity"
	"github.com/infonce/infonce/rundir"
)

// trainJob is one `infonce train` process of a benchmark that compares
// whole jobs ('bench alternate', 'bench pair').
type trainJob struct {
	Binary string   // the infonce binary to run
	Args   []string // flags after 'train'
	Out    string   // its run directory (--out); its log goes to Out+".log"
	Cores  []int    // pin the process to these cores (empty: no pinning)
	Env    []string // added to this process's environment
}

// jobRunner runs one job to its end and returns its throughput in
// samples/s. The benchmarks take it as a parameter so that their
// scheduling and arithmetic are tested without training anything.
type jobRunner func(ctx context.Context, j trainJob) (float64, error)

// runTrainJob is the jobRunner of the command line: it runs the job and
// reads samples_per_second from the summary.json it wrote.
func runTrainJob(ctx context.Context, j trainJob) (float64, error) {
	if err := runJob(ctx, j); err != nil {
		return 0, err
	}
	return summaryRate(j.Out)
}

// runJob runs 'infonce train --out OUT ARGS' to its end, its output in
// OUT.log.
func runJob(ctx context.Context, j trainJob) error {
	log, err := os.Create(j.Out + ".log")
	if err != nil {
		return fmt.Errorf("job log: %w", err)
	}
	defer log.Close()
	args := append([]string{"train", "--out", j.Out}, j.Args...)
	cmd := exec.CommandContext(ctx, j.Binary, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), j.Env...)
	if err := affinity.Start(cmd, j.Cores); err != nil {
		return fmt.Errorf("start %s %v: %w", j.Binary, args, err)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%s %v: %w (log: %s)", j.Binary, args, err, log.Name())
	}
	return nil
}

// summaryRate reads the samples_per_second of a run directory's summary.json.
func summaryRate(dir string) (float64, error) {
	s, err := rundir.ReadSummary(dir)
	if err != nil {
		return 0, fmt.Errorf("read the job's summary: %w", err)
	}
	if s.SamplesPerSecond <= 0 {
		return 0, fmt.Errorf("%s: no samples_per_second", rundir.SummaryPath(dir))
	}
	return s.SamplesPerSecond, nil
}

// median of xs (the mean of the two middle values for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// benchOutDir returns dir, or a new temporary directory when dir is empty.
func benchOutDir(dir, pattern string) (string, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", pattern)
		if err != nil {
			return "", fmt.Errorf("output directory: %w", err)
		}
		return d, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("output directory: %w", err)
	}
	return dir, nil
}

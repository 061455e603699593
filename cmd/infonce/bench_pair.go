package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// 'infonce bench pair' measures what two workers could reach at best on
// this machine: two 1-worker jobs of half the global batch, pinned one per
// core, side by side, neither talking nor waiting. Their throughput over
// twice that of one job of the whole batch is the E(2) of a run without
// communication, the ceiling of the E(2) of 'bench scaling'.

func init() {
	registerBench("pair", benchmark{
		summary: "the E(2) of two jobs that never communicate, beside that of a 2-worker job",
		run:     runBenchPair,
	})
}

const pairUsage = `usage: infonce bench pair [--rounds 5] [--steps 400] [--batch 512] [--out DIR] [-- training flags]

Every round runs, each job pinned and with GOMAXPROCS=1:
  solo    a 1-worker job with half the batch, on core 0, alone
  pair    two such jobs side by side, on cores 0 and 1 (the second with --seed 2)
  whole   a 1-worker job with the whole batch, on core 0
  two     a 2-worker job with the whole batch (--workers 2 --cores-per-worker 1)
and prints the median samples/s of each (pair: the mean of its two jobs) and
  pair/solo     what running beside another job costs one job
  E(2)          two / (2·whole)
  independent   pair / whole: the E(2) of two jobs that neither talk nor
                wait (their loss covers B/2 columns, not B)
Linux only; needs 2 cores.

flags:
`

// pairRates are the samples/s of each kind of job, one per round.
type pairRates struct {
	Solo, Pair, Whole, Two []float64
}

// pairReport is the medians and their ratios.
type pairReport struct {
	Solo, Pair, Whole, Two float64
	PairOverSolo           float64 // pair / solo
	E2                     float64 // two / (2·whole)
	Independent            float64 // pair / whole
}

func summarizePair(r pairRates) pairReport {
	p := pairReport{Solo: median(r.Solo), Pair: median(r.Pair), Whole: median(r.Whole), Two: median(r.Two)}
	p.PairOverSolo = p.Pair / p.Solo
	p.E2 = p.Two / (2 * p.Whole)
	p.Independent = p.Pair / p.Whole
	return p
}

// pairRounds runs the four kinds of job, round after round.
func pairRounds(ctx context.Context, rounds, steps, batch int, self, out string, extra []string, run jobRunner, progress io.Writer) (pairRates, error) {
	one := []string{"--steps", strconv.Itoa(steps), "--no-eval", "--threads-per-worker", "1"}
	half := append(append([]string{}, one...), "--batch", strconv.Itoa(batch/2))
	whole := append(append([]string{}, one...), "--batch", strconv.Itoa(batch))
	env := []string{"GOMAXPROCS=1"}
	job := func(tag string, r int, core int, args []string) trainJob {
		j := trainJob{Binary: self, Args: append(args, extra...), Out: filepath.Join(out, fmt.Sprintf("%s-%d", tag, r)), Env: env}
		if core >= 0 {
			j.Cores = []int{core}
		}
		return j
	}
	var rates pairRates
	for r := range rounds {
		x, err := run(ctx, job("solo", r, 0, half))
		if err != nil {
			return rates, fmt.Errorf("round %d, solo: %w", r+1, err)
		}
		rates.Solo = append(rates.Solo, x)

		var wg sync.WaitGroup
		var xs [2]float64
		var errs [2]error
		for i := range 2 {
			args := half
			if i == 1 {
				args = append(append([]string{}, half...), "--seed", "2")
			}
			wg.Go(func() { xs[i], errs[i] = run(ctx, job(fmt.Sprintf("pair%d", i), r, i, args)) })
		}
		wg.Wait()
		if err := errors.Join(errs[:]...); err != nil {
			return rates, fmt.Errorf("round %d, pair: %w", r+1, err)
		}
		rates.Pair = append(rates.Pair, (xs[0]+xs[1])/2)

		if x, err = run(ctx, job("whole", r, 0, whole)); err != nil {
			return rates, fmt.Errorf("round %d, whole: %w", r+1, err)
		}
		rates.Whole = append(rates.Whole, x)

		two := append(append([]string{}, whole...), "--workers", "2", "--cores-per-worker", "1")
		if x, err = run(ctx, job("two", r, -1, two)); err != nil {
			return rates, fmt.Errorf("round %d, two: %w", r+1, err)
		}
		rates.Two = append(rates.Two, x)
		fmt.Fprintf(progress, "round %d/%d  solo %.0f  pair %.0f  whole %.0f  two %.0f samples/s\n",
			r+1, rounds, rates.Solo[r], rates.Pair[r], rates.Whole[r], rates.Two[r])
	}
	return rates, nil
}

func printPair(w io.Writer, p pairReport) {
	fmt.Fprintln(w, "| solo | pair (each) | whole | two workers | pair/solo | E(2) | independent |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	fmt.Fprintf(w, "| %.0f | %.0f | %.0f | %.0f | %.3f | %.3f | %.3f |\n",
		p.Solo, p.Pair, p.Whole, p.Two, p.PairOverSolo, p.E2, p.Independent)
}

func runBenchPair(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench pair", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, pairUsage); fs.PrintDefaults() }
	rounds := fs.Int("rounds", 5, "rounds; each runs the four kinds of job once")
	steps := fs.Int("steps", 400, "training steps of every job")
	batch := fs.Int("batch", 512, "the global batch B (the half-batch jobs get B/2)")
	outFlag := fs.String("out", "", "directory of the jobs' run directories and logs (default a new temporary directory)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if *rounds < 1 || *steps < 1 || *batch < 2 || *batch%2 != 0 {
		return usageError{fmt.Errorf("--rounds %d, --steps %d, --batch %d: want at least one round and step, and an even batch", *rounds, *steps, *batch)}
	}
	extra := fs.Args()
	for _, a := range extra {
		switch strings.TrimLeft(strings.SplitN(a, "=", 2)[0], "-") {
		case "out", "steps", "no-eval", "batch", "seed", "workers", "cores-per-worker", "threads-per-worker":
			return usageError{fmt.Errorf("training flag %s is set by the benchmark", a)}
		}
	}
	if runtime.GOOS != "linux" {
		return errors.New("bench pair pins jobs to cores, which needs Linux")
	}
	if runtime.NumCPU() < 2 {
		return fmt.Errorf("bench pair needs 2 cores, this machine has %d", runtime.NumCPU())
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary: %w", err)
	}
	out, err := benchOutDir(*outFlag, "infonce-pair-")
	if err != nil {
		return err
	}
	rates, err := pairRounds(ctx, *rounds, *steps, *batch, self, out, extra, runTrainJob, stderr)
	if err != nil {
		return err
	}
	printPair(stdout, summarizePair(rates))
	fmt.Fprintf(stdout, "\nruns in %s\n", out)
	return nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// 'infonce bench alternate' compares whole training jobs: variants (other
// flags, other binaries) run one after the other, round after round, so
// that a change of a shared machine's speed falls on every variant alike.
// It reports each variant's median samples/s and, against the first
// variant, the median of the per-round ratios and the rounds it won.

func init() {
	registerBench("alternate", benchmark{
		summary: "whole training jobs of several variants (flags, binaries) in alternation",
		run:     runBenchAlternate,
	})
}

const alternateUsage = `usage: infonce bench alternate [--rounds 5] [--steps 400] [--out DIR] LABEL=ARGS [LABEL=ARGS ...]

Each LABEL=ARGS is a variant: ARGS are 'infonce train' flags, split at
white space; a first word @PATH runs the binary PATH instead of this one.
Every job runs 'train --steps STEPS --no-eval --out DIR/LABEL-ROUND ARGS',
and its samples/s is summary.json's samples_per_second. Within a round the
variants run in turn, in reverse order every other round.

Example (two pinned workers against one, and an older build):
  infonce bench alternate --rounds 9 one="--cores-per-worker 1 --threads-per-worker 1" \
      two="--workers 2 --cores-per-worker 1 --threads-per-worker 1" \
      old="@/tmp/infonce-old --workers 2 --cores-per-worker 1 --threads-per-worker 1"

flags:
`

// alternateVariant is one LABEL=ARGS of the command line.
type alternateVariant struct {
	Label  string
	Binary string // empty: this binary
	Args   []string
}

// parseAlternateVariant reads LABEL=ARGS.
func parseAlternateVariant(spec string) (alternateVariant, error) {
	label, args, ok := strings.Cut(spec, "=")
	if !ok || label == "" {
		return alternateVariant{}, fmt.Errorf("variant %q: want LABEL=ARGS", spec)
	}
	if strings.ContainsAny(label, `/\`) {
		return alternateVariant{}, fmt.Errorf("variant %q: the label names a directory and may not hold a slash", spec)
	}
	v := alternateVariant{Label: label, Args: strings.Fields(args)}
	if len(v.Args) > 0 && strings.HasPrefix(v.Args[0], "@") {
		v.Binary, v.Args = v.Args[0][1:], v.Args[1:]
		if v.Binary == "" {
			return alternateVariant{}, fmt.Errorf("variant %q: @ needs a path", spec)
		}
	}
	for _, a := range v.Args {
		switch strings.TrimLeft(strings.SplitN(a, "=", 2)[0], "-") {
		case "out", "steps", "no-eval":
			return alternateVariant{}, fmt.Errorf("variant %q: %s is set by the benchmark", spec, a)
		}
	}
	return v, nil
}

// alternateRounds runs every variant once per round and returns
// rates[v][r], the samples/s of variant v in round r.
func alternateRounds(ctx context.Context, vs []alternateVariant, rounds, steps int, self, out string, run jobRunner, progress io.Writer) ([][]float64, error) {
	rates := make([][]float64, len(vs))
	for r := range rounds {
		for i := range vs {
			if r%2 == 1 {
				i = len(vs) - 1 - i
			}
			v := vs[i]
			bin := v.Binary
			if bin == "" {
				bin = self
			}
			args := append([]string{"--steps", fmt.Sprint(steps), "--no-eval"}, v.Args...)
			x, err := run(ctx, trainJob{Binary: bin, Args: args, Out: filepath.Join(out, fmt.Sprintf("%s-%d", v.Label, r))})
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", r+1, v.Label, err)
			}
			rates[i] = append(rates[i], x)
			fmt.Fprintf(progress, "round %d/%d  %-12s %10.0f samples/s\n", r+1, rounds, v.Label, x)
		}
	}
	return rates, nil
}

// alternateRow is one variant's line of the report.
type alternateRow struct {
	Label    string
	Median   float64 // median samples/s over the rounds
	Min, Max float64
	Ratio    float64 // median over the rounds of this variant's samples/s over the first variant's
	Won      int     // rounds in which this variant was faster than the first
	Rounds   int
}

// summarizeAlternate turns rates[v][r] into the report's rows.
func summarizeAlternate(vs []alternateVariant, rates [][]float64) []alternateRow {
	rows := make([]alternateRow, len(vs))
	for i, v := range vs {
		xs := rates[i]
		row := alternateRow{Label: v.Label, Median: median(xs), Rounds: len(xs)}
		row.Min, row.Max = xs[0], xs[0]
		ratios := make([]float64, len(xs))
		for r, x := range xs {
			row.Min, row.Max = min(row.Min, x), max(row.Max, x)
			ratios[r] = x / rates[0][r]
			if x > rates[0][r] {
				row.Won++
			}
		}
		row.Ratio = median(ratios)
		rows[i] = row
	}
	return rows
}

func printAlternate(w io.Writer, rows []alternateRow) {
	fmt.Fprintln(w, "| variant | samples/s (median) | min–max | ÷ first (median of rounds) | rounds won against the first |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for i, r := range rows {
		won := fmt.Sprintf("%d of %d", r.Won, r.Rounds)
		if i == 0 {
			won = "–"
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f–%.0f | %.3f | %s |\n", r.Label, r.Median, r.Min, r.Max, r.Ratio, won)
	}
}

func runBenchAlternate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench alternate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, alternateUsage); fs.PrintDefaults() }
	rounds := fs.Int("rounds", 5, "rounds; each runs every variant once")
	steps := fs.Int("steps", 400, "training steps of every job")
	outFlag := fs.String("out", "", "directory of the jobs' run directories and logs (default a new temporary directory)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if *rounds < 1 || *steps < 1 {
		return usageError{fmt.Errorf("--rounds %d, --steps %d: both must be at least 1", *rounds, *steps)}
	}
	if fs.NArg() == 0 {
		return usageError{errors.New("no variant: give at least one LABEL=ARGS")}
	}
	var vs []alternateVariant
	seen := map[string]bool{}
	for _, spec := range fs.Args() {
		v, err := parseAlternateVariant(spec)
		if err != nil {
			return usageError{err}
		}
		if seen[v.Label] {
			return usageError{fmt.Errorf("variant %q given twice", v.Label)}
		}
		seen[v.Label] = true
		vs = append(vs, v)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary: %w", err)
	}
	out, err := benchOutDir(*outFlag, "infonce-alternate-")
	if err != nil {
		return err
	}
	rates, err := alternateRounds(ctx, vs, *rounds, *steps, self, out, runTrainJob, stderr)
	if err != nil {
		return err
	}
	printAlternate(stdout, summarizeAlternate(vs, rates))
	fmt.Fprintf(stdout, "\nruns in %s\n", out)
	return nil
}

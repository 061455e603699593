package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/infonce/infonce/rundir"
)

// 'infonce bench objectives' trains one job per (row, seed) and tabulates
// the mean ± standard deviation over the seeds of chosen summary.json
// fields: the table that compares objectives and negative strategies. With
// --batches it instead trains every row at each global batch size for the
// same number of samples seen, and tabulates the fields against the batch.

func init() {
	registerBench("objectives", benchmark{
		summary: "objectives and negative strategies over seeds, or against the global batch",
		run:     runBenchObjectives,
	})
}

const objectivesUsage = `usage: infonce bench objectives [--preset negatives|vla] [--row NAME=FLAGS]... [--seeds 3]
       [--metrics k1,k2,...] [--batches B1,B2,... --samples-seen N] [--out DIR] [-- training flags]

Every row is a set of training flags; every job is 'infonce train --seed S
ROW FLAGS TRAINING FLAGS', run one after the other. The table gives, for
each row and each metric (a field of summary.json), the mean ± sample
standard deviation over the seeds 1..--seeds.

presets (rows and metrics when no --row or --metrics is given):
  negatives  clip, clip masked (--mask-false-negatives=label), clip hard
             (--hard-negatives 1), clip debiased (--debias 0.1), siglip,
             simclr, moco; zero-shot top-1, class R@1 image→text, linear
             probe, samples/s
  vla        clip, tri, vla, tcn + clip (--tcn-weight 1); action and
             instruction retrieval, task recognition, action R², Kendall τ,
             samples/s

With --batches every row is trained at each global batch B for
--samples-seen/B steps (at least 1), and the table has a column per batch.

flags:
`

// objectivesRow is one line of the table: a name and its training flags.
type objectivesRow struct {
	Name  string
	Flags []string
}

// objectivesPresets are the rows and metrics of the two standard tables.
var objectivesPresets = map[string]struct {
	Rows    []objectivesRow
	Metrics []string
}{
	"negatives": {
		Rows: []objectivesRow{
			{"clip", []string{"--objective", "clip"}},
			{"clip, masked", []string{"--objective", "clip", "--mask-false-negatives=label"}},
			{"clip, hard (β 1)", []string{"--objective", "clip", "--hard-negatives", "1"}},
			{"clip, debiased (τ+ 0.1)", []string{"--objective", "clip", "--debias", "0.1"}},
			{"siglip", []string{"--objective", "siglip"}},
			{"simclr", []string{"--objective", "simclr"}},
			{"moco", []string{"--objective", "moco"}},
		},
		Metrics: []string{"zero_shot_top1", "class_recall_i2t_at_1", "linear_probe_accuracy", "samples_per_second"},
	},
	"vla": {
		Rows: []objectivesRow{
			{"clip", []string{"--objective", "clip"}},
			{"tri", []string{"--objective", "tri"}},
			{"vla", []string{"--objective", "vla"}},
			{"tcn + clip", []string{"--objective", "clip", "--tcn-weight", "1"}},
		},
		Metrics: []string{"action_recall_at_1", "action_recall_at_5", "action_recall_at_10", "action_median_rank",
			"instruction_recall_at_1", "instruction_recall_at_5", "task_zero_shot_top1", "task_probe_accuracy",
			"action_r2", "temporal_kendall_tau", "action_chance_at_5", "samples_per_second"},
	},
}

// rowFlags is a repeatable --row NAME=FLAGS.
type rowFlags []objectivesRow

func (r *rowFlags) String() string { return fmt.Sprint(len(*r)) }

func (r *rowFlags) Set(s string) error {
	name, flags, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("--row %q: want NAME=FLAGS", s)
	}
	*r = append(*r, objectivesRow{Name: strings.TrimSpace(name), Flags: strings.Fields(flags)})
	return nil
}

// summaryRunner runs one training job and returns its summary.json as
// fields by name; tests replace it.
type summaryRunner func(ctx context.Context, j trainJob) (map[string]float64, error)

// runSummaryJob is the summaryRunner of the command line.
func runSummaryJob(ctx context.Context, j trainJob) (map[string]float64, error) {
	if err := runJob(ctx, j); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(rundir.SummaryPath(j.Out))
	if err != nil {
		return nil, fmt.Errorf("read the job's summary: %w", err)
	}
	return numericFields(b)
}

// numericFields returns the top-level numeric fields of a JSON object.
func numericFields(b []byte) (map[string]float64, error) {
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	out := make(map[string]float64, len(raw))
	for k, v := range raw {
		if x, ok := v.(float64); ok {
			out[k] = x
		}
	}
	return out, nil
}

// meanStd returns the mean and the sample standard deviation (n−1) of xs;
// the deviation is 0 for a single value.
func meanStd(xs []float64) (mean, std float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	if len(xs) < 2 {
		return mean, 0
	}
	for _, x := range xs {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(xs)-1))
}

// objectivesCell is one (row, column) of the table: each metric's values
// over the seeds.
type objectivesCell map[string][]float64

// objectivesPlan is what the benchmark runs.
type objectivesPlan struct {
	Rows        []objectivesRow
	Metrics     []string
	Seeds       int
	Batches     []int // empty: one column, the flags' own batch
	SamplesSeen int
	Extra       []string
}

// runObjectives runs every job of the plan and returns the cells, indexed
// [row][column].
func runObjectives(ctx context.Context, p objectivesPlan, self, out string, run summaryRunner, progress io.Writer) ([][]objectivesCell, error) {
	cols := max(1, len(p.Batches))
	cells := make([][]objectivesCell, len(p.Rows))
	for i, row := range p.Rows {
		cells[i] = make([]objectivesCell, cols)
		for c := range cols {
			cells[i][c] = objectivesCell{}
			for s := 1; s <= p.Seeds; s++ {
				args := append([]string{"--seed", strconv.Itoa(s)}, row.Flags...)
				tag := fmt.Sprintf("row%d-seed%d", i, s)
				if len(p.Batches) > 0 {
					B := p.Batches[c]
					args = append(args, "--batch", strconv.Itoa(B), "--steps", strconv.Itoa(max(1, p.SamplesSeen/B)))
					tag = fmt.Sprintf("row%d-batch%d-seed%d", i, B, s)
				}
				args = append(args, p.Extra...)
				fields, err := run(ctx, trainJob{Binary: self, Args: args, Out: filepath.Join(out, tag)})
				if err != nil {
					return nil, fmt.Errorf("%s, seed %d: %w", row.Name, s, err)
				}
				// A metric the run does not have (zero-shot of an
				// image-only objective) stays empty and prints as "–".
				for _, m := range p.Metrics {
					if x, ok := fields[m]; ok {
						cells[i][c][m] = append(cells[i][c][m], x)
					}
				}
				fmt.Fprintf(progress, "%s  %s done\n", row.Name, tag)
			}
		}
	}
	return cells, nil
}

// formatMetric prints a mean ± std (the mean alone for one value):
// fractions as percentages, ranks and rates as numbers.
func formatMetric(name string, xs []float64) string {
	if len(xs) == 0 {
		return "–"
	}
	m, s := meanStd(xs)
	scale, format, unit := 100.0, "%.1f", " %"
	switch {
	case name == "samples_per_second":
		scale, format, unit = 1, "%.0f", ""
	case strings.Contains(name, "rank"):
		scale, unit = 1, ""
	case strings.Contains(name, "r2") || strings.Contains(name, "tau"):
		scale, format, unit = 1, "%.3f", ""
	}
	if len(xs) == 1 {
		return fmt.Sprintf(format, scale*m) + unit
	}
	return fmt.Sprintf(format+" ± "+format, scale*m, scale*s) + unit
}

// printObjectives writes the table: a row per objective and a column per
// metric, or with batches a table per metric with a column per batch.
func printObjectives(w io.Writer, p objectivesPlan, cells [][]objectivesCell) {
	if len(p.Batches) == 0 {
		fmt.Fprintf(w, "| row | %s |\n|---|%s\n", strings.Join(p.Metrics, " | "), strings.Repeat("---|", len(p.Metrics)))
		for i, row := range p.Rows {
			vals := make([]string, len(p.Metrics))
			for j, m := range p.Metrics {
				vals[j] = formatMetric(m, cells[i][0][m])
			}
			fmt.Fprintf(w, "| %s | %s |\n", row.Name, strings.Join(vals, " | "))
		}
		return
	}
	for k, m := range p.Metrics {
		if k > 0 {
			fmt.Fprintln(w)
		}
		heads := make([]string, len(p.Batches))
		for c, B := range p.Batches {
			heads[c] = "B = " + strconv.Itoa(B)
		}
		fmt.Fprintf(w, "%s\n\n| row | %s |\n|---|%s\n", m, strings.Join(heads, " | "), strings.Repeat("---|", len(heads)))
		for i, row := range p.Rows {
			vals := make([]string, len(p.Batches))
			for c := range p.Batches {
				vals[c] = formatMetric(m, cells[i][c][m])
			}
			fmt.Fprintf(w, "| %s | %s |\n", row.Name, strings.Join(vals, " | "))
		}
	}
}

// parseInts parses a comma-separated list of positive integers.
func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func runBenchObjectives(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench objectives", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, objectivesUsage); fs.PrintDefaults() }
	preset := fs.String("preset", "negatives", "rows and metrics: negatives or vla")
	var rows rowFlags
	fs.Var(&rows, "row", "a row NAME=FLAGS, NAME without \"=\" (repeatable; replaces the preset's rows)")
	seeds := fs.Int("seeds", 3, "seeds 1..N of every row")
	metrics := fs.String("metrics", "", "summary.json fields, comma-separated (default the preset's)")
	batches := fs.String("batches", "", "global batch sizes, comma-separated: a column per batch at a fixed --samples-seen")
	samplesSeen := fs.Int("samples-seen", 600000, "with --batches: samples every job trains on (steps = samples/batch)")
	outFlag := fs.String("out", "", "directory of the jobs' run directories and logs (default a new temporary directory)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	pr, ok := objectivesPresets[*preset]
	if !ok {
		return usageError{fmt.Errorf("--preset %q: want negatives or vla", *preset)}
	}
	p := objectivesPlan{Rows: pr.Rows, Metrics: pr.Metrics, Seeds: *seeds, SamplesSeen: *samplesSeen, Extra: fs.Args()}
	if len(rows) > 0 {
		p.Rows = rows
	}
	if *metrics != "" {
		p.Metrics = strings.Split(*metrics, ",")
	}
	if *seeds < 1 {
		return usageError{fmt.Errorf("--seeds %d: want at least 1", *seeds)}
	}
	if *batches != "" {
		b, err := parseInts(*batches)
		if err != nil {
			return usageError{fmt.Errorf("--batches: %w", err)}
		}
		p.Batches = b
	}
	for _, a := range p.Extra {
		switch strings.TrimLeft(strings.SplitN(a, "=", 2)[0], "-") {
		case "out", "seed":
			return usageError{fmt.Errorf("training flag %s is set by the benchmark", a)}
		case "batch", "steps":
			if len(p.Batches) > 0 {
				return usageError{fmt.Errorf("training flag %s is set by --batches", a)}
			}
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary: %w", err)
	}
	out, err := benchOutDir(*outFlag, "infonce-objectives-")
	if err != nil {
		return err
	}
	cells, err := runObjectives(ctx, p, self, out, runSummaryJob, stderr)
	if err != nil {
		return err
	}
	printObjectives(stdout, p, cells)
	fmt.Fprintf(stdout, "\nruns in %s\n", out)
	return nil
}

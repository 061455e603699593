package deploy

import (
	"errors"
	"fmt"
	"io"
	"math"
	"sort"

	"github.com/infonce/infonce/rundir"
)

// maxMetricsLine bounds one line of metrics.jsonl.
const maxMetricsLine = rundir.MaxMetricLine

// ReadLosses reads a metrics.jsonl stream (rundir.DecodeMetrics: one JSON
// object per logged step, with at least "step" and "loss") and returns the
// loss of every step. When a step appears more than once (a rank 0 that
// died after logging it and a survivor that ran it again), the last line
// wins. Blank lines are skipped, and so is a torn last line still being
// written; any other line that is not such an object is an error naming
// its line number.
func ReadLosses(r io.Reader) (map[int64]float64, error) {
	ms, _, err := rundir.DecodeMetrics(r)
	if err != nil {
		return nil, err
	}
	return rundir.Losses(ms), nil
}

// LossDiff is the outcome of [CompareLosses].
type LossDiff struct {
	Steps   int     // steps compared (every step of want)
	MaxRel  float64 // max over steps of |got - want| / |want|
	WorstAt int64   // the step of MaxRel
	Got     float64 // got's loss at WorstAt
	Want    float64 // want's loss at WorstAt
}

// CompareLosses compares got against want step by step: every step of want
// must be in got, with a finite loss, and the result holds the largest
// relative difference |got - want| / |want|. Extra steps in got are an
// error too: both runs must have logged the same steps.
func CompareLosses(got, want map[int64]float64) (LossDiff, error) {
	if len(want) == 0 {
		return LossDiff{}, errors.New("compare losses: the reference has no steps")
	}
	steps := make([]int64, 0, len(want))
	for s := range want {
		steps = append(steps, s)
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i] < steps[j] })
	var missing []int64
	d := LossDiff{Steps: len(steps), WorstAt: -1}
	for _, s := range steps {
		g, ok := got[s]
		if !ok {
			missing = append(missing, s)
			continue
		}
		w := want[s]
		if math.IsNaN(g) || math.IsInf(g, 0) || math.IsNaN(w) || math.IsInf(w, 0) {
			return d, fmt.Errorf("compare losses: step %d: non-finite loss (got %v, want %v)", s, g, w)
		}
		rel := math.Abs(g-w) / math.Max(math.Abs(w), math.SmallestNonzeroFloat64)
		if d.WorstAt < 0 || rel > d.MaxRel {
			d.MaxRel, d.WorstAt, d.Got, d.Want = rel, s, g, w
		}
	}
	if len(missing) > 0 {
		return d, fmt.Errorf("compare losses: %d of %d steps missing (first %d)", len(missing), len(steps), missing[0])
	}
	if len(got) != len(want) {
		return d, fmt.Errorf("compare losses: %d steps logged, the reference has %d", len(got), len(want))
	}
	return d, nil
}

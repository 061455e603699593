package scaling

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// Resamples is the number of bootstrap resamples behind an efficiency's
// interval.
const Resamples = 2000

// MinRoundsForInterval is the fewest rounds (repeats of every worker
// count) from which an interval is given: with fewer, resampling them says
// nothing about the spread.
const MinRoundsForInterval = 3

// bootstrapSeed seeds the resampling: the interval is a function of the
// measured runs alone, so that --from redraws the same one.
var bootstrapSeed = [2]uint64{0x696e666f, 0x6e636531}

// setEfficiencyIntervals fills every point's EfficiencyCI95: the 95 %
// percentile bootstrap interval of E(n) = X(n)·n0 / (n·X(n0)), X the
// median throughput of the repeats as in the table.
//
// The repeats go round the worker counts, so repeat r of every count ran
// in one round, under the same load; a resample draws R rounds of the R
// with replacement and takes every count's runs of those rounds, keeping
// that pairing. Each point's interval is then the 2.5th and 97.5th
// percentiles of E over the resamples. It is left zero when the points
// do not all have the same number of runs, or have fewer than
// MinRoundsForInterval.
func setEfficiencyIntervals(ps []Point) {
	for i := range ps {
		ps[i].EfficiencyCI95 = nil
	}
	if len(ps) == 0 {
		return
	}
	rounds := len(ps[0].Runs)
	if rounds < MinRoundsForInterval || slices.ContainsFunc(ps, func(p Point) bool { return len(p.Runs) != rounds }) {
		return
	}
	rng := rand.New(rand.NewPCG(bootstrapSeed[0], bootstrapSeed[1]))
	pick := make([]int, rounds)
	xs := make([]float64, rounds)
	median := func(p Point) float64 {
		for i, r := range pick {
			xs[i] = p.Runs[r].SamplesPerSecond
		}
		return xs[medianIndex(xs)]
	}
	e := make([][]float64, len(ps))
	for range Resamples {
		for i := range pick {
			pick[i] = rng.IntN(rounds)
		}
		x0 := median(ps[0])
		for i, p := range ps {
			e[i] = append(e[i], Efficiency(p.Workers, median(p), ps[0].Workers, x0))
		}
	}
	for i := range ps {
		slices.Sort(e[i])
		ps[i].EfficiencyCI95 = []float64{percentile(e[i], 0.025), percentile(e[i], 0.975)}
	}
}

// percentile returns the q-th quantile of the sorted xs, the element at
// the rounded rank q·(len−1).
func percentile(sorted []float64, q float64) float64 {
	return sorted[int(math.Round(q*float64(len(sorted)-1)))]
}

// Pool merges reports of the same benchmark, measured one after another,
// into one whose points hold every report's runs, in the order the
// reports are given: round r of the second report becomes round R₁+r of
// the pool, so the rounds keep their pairing. Medians, efficiencies and
// intervals are those of the pooled runs. The reports must agree on the
// model, the network, the training flags and the worker counts and
// threads.
func Pool(reps ...*Report) (*Report, error) {
	if len(reps) == 0 {
		return nil, fmt.Errorf("pool: no report")
	}
	first := reps[0]
	out := *first
	out.Points = nil
	out.Repeat = 0
	runs := make([][]Run, len(first.Points))
	for k, r := range reps {
		if err := samePlan(first, r); err != nil {
			return nil, fmt.Errorf("pool: report %d of %d: %w", k+1, len(reps), err)
		}
		for i, p := range r.Points {
			runs[i] = append(runs[i], p.Runs...)
		}
		out.Repeat += r.Repeat
	}
	for i, p := range first.Points {
		q, err := newPoint(p.Workers, p.Threads, 0, runs[i])
		if err != nil {
			return nil, fmt.Errorf("pool: %d workers: %w", p.Workers, err)
		}
		q.Oversubscribed = p.Oversubscribed
		out.Points = append(out.Points, q)
	}
	setEfficiencies(out.Points)
	last := reps[len(reps)-1]
	out.Machine.LoadEnd = last.Machine.LoadEnd
	out.Command = fmt.Sprintf("pooled from %d reports; the first: %s", len(reps), first.Command)
	return &out, nil
}

// samePlan reports why r is not the benchmark first is, if it is not.
func samePlan(first, r *Report) error {
	var diffs []string
	if r.Objective != first.Objective || r.Batch != first.Batch || r.Dim != first.Dim || r.Params != first.Params {
		diffs = append(diffs, fmt.Sprintf("model %s B=%d d=%d P=%d, the first %s B=%d d=%d P=%d",
			r.Objective, r.Batch, r.Dim, r.Params, first.Objective, first.Batch, first.Dim, first.Params))
	}
	if r.Steps != first.Steps {
		diffs = append(diffs, fmt.Sprintf("%d steps, the first %d", r.Steps, first.Steps))
	}
	if r.Network != first.Network {
		diffs = append(diffs, fmt.Sprintf("network %q, the first %q", r.Network, first.Network))
	}
	if !slices.Equal(r.TrainArgs, first.TrainArgs) {
		diffs = append(diffs, fmt.Sprintf("training flags %q, the first %q", r.TrainArgs, first.TrainArgs))
	}
	shape := func(rep *Report) string {
		var b strings.Builder
		for _, p := range rep.Points {
			fmt.Fprintf(&b, "%d×%d ", p.Workers, p.Threads)
		}
		return strings.TrimSpace(b.String())
	}
	if shape(r) != shape(first) {
		diffs = append(diffs, fmt.Sprintf("workers×threads %s, the first %s", shape(r), shape(first)))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("another benchmark: %s", strings.Join(diffs, "; "))
	}
	return nil
}

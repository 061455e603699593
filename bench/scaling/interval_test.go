package scaling

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// points builds one point per worker count from the per-round throughputs
// xs[i][r] of count workers[i], with the table's medians and efficiencies.
func points(t *testing.T, workers []int, xs [][]float64) []Point {
	t.Helper()
	var ps []Point
	for i, n := range workers {
		var runs []Run
		for _, x := range xs[i] {
			runs = append(runs, Run{SamplesPerSecond: x})
		}
		p, err := newPoint(n, 1, 0, runs)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	setEfficiencies(ps)
	return ps
}

func TestEfficiencyIntervals(t *testing.T) {
	// noisy: each round's load scales both counts alike (f), and each job
	// has noise of its own (±5 %).
	rng := rand.New(rand.NewPCG(7, 8))
	var noisy1, noisy2, loaded1, loaded2 []float64
	for range 15 {
		f := 0.7 + 0.6*rng.Float64()
		noisy1 = append(noisy1, 1000*(0.95+0.1*rng.Float64()))
		noisy2 = append(noisy2, 1700*(0.95+0.1*rng.Float64()))
		loaded1, loaded2 = append(loaded1, 1000*f), append(loaded2, 1700*f)
	}
	for _, tc := range []struct {
		name   string
		xs     [][]float64
		want   []float64 // the interval of 2 workers; nil: none
		within bool      // the interval only has to hold the estimate, with room on both sides
	}{
		{"constant", [][]float64{{1000, 1000, 1000, 1000}, {1700, 1700, 1700, 1700}}, []float64{0.85, 0.85}, false},
		// Every round's load moves both counts alike: resampling whole
		// rounds keeps the pairs, so every resample gives 0.85 again.
		// Resampling each count on its own would spread it over 0.6–1.2.
		{"paired rounds", [][]float64{loaded1, loaded2}, []float64{0.85, 0.85}, false},
		{"noisy", [][]float64{noisy1, noisy2}, nil, true},
		{"two rounds", [][]float64{{1000, 1100}, {1700, 1800}}, nil, false},
		{"uneven rounds", [][]float64{{1000, 1100, 1050}, {1700, 1800}}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := points(t, []int{1, 2}, tc.xs)
			setEfficiencyIntervals(ps)
			got := ps[1].EfficiencyCI95
			switch {
			case tc.within:
				e := ps[1].Efficiency
				if len(got) != 2 || !(got[0] < e && e < got[1]) || got[1]-got[0] > 0.2 {
					t.Fatalf("interval %v does not bracket E = %.4f tightly", got, e)
				}
				if b := ps[0].EfficiencyCI95; len(b) != 2 || b[0] != 1 || b[1] != 1 {
					t.Errorf("the baseline's interval is %v, want [1 1]", b)
				}
				again := points(t, []int{1, 2}, tc.xs)
				setEfficiencyIntervals(again)
				if !slices.Equal(again[1].EfficiencyCI95, got) {
					t.Errorf("the interval is %v the second time, %v the first", again[1].EfficiencyCI95, got)
				}
			case tc.want == nil:
				if got != nil {
					t.Errorf("interval %v, want none", got)
				}
			default:
				if len(got) != 2 || !closeTo(got[0], tc.want[0]) || !closeTo(got[1], tc.want[1]) {
					t.Errorf("interval %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func closeTo(a, b float64) bool { return a-b < 1e-12 && b-a < 1e-12 }

// TestIntervalNarrowsWithRounds: four times the rounds of the same spread
// give a narrower interval.
func TestIntervalNarrowsWithRounds(t *testing.T) {
	width := func(rounds int) float64 {
		rng := rand.New(rand.NewPCG(3, 4))
		xs := [][]float64{nil, nil}
		for range rounds {
			xs[0] = append(xs[0], 1000*(0.9+0.2*rng.Float64()))
			xs[1] = append(xs[1], 1700*(0.9+0.2*rng.Float64()))
		}
		ps := points(t, []int{1, 2}, xs)
		setEfficiencyIntervals(ps)
		return ps[1].EfficiencyCI95[1] - ps[1].EfficiencyCI95[0]
	}
	if w9, w36 := width(9), width(36); !(w36 < w9) {
		t.Errorf("interval width %.4f with 36 rounds, %.4f with 9", w36, w9)
	}
}

func TestPool(t *testing.T) {
	measure := func(repeat int, args ...string) *Report {
		o := Options{Workers: []int{1, 2}, Steps: 5, Repeat: repeat, Threads: 1, Out: t.TempDir(), Cores: 2, Timeout: defaultTimeout, TrainArgs: args}
		fl := &fakeLauncher{x1: 1000, eff: func(n int) float64 { return 1 / (1 + 0.2*float64(n-1)) }}
		rep, err := Measure(context.Background(), o, fl, nil)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	a, b := measure(2), measure(3)
	pool, err := Pool(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if pool.Repeat != 5 || len(pool.Points) != 2 {
		t.Fatalf("pooled %d repeats into %d points, want 5 and 2", pool.Repeat, len(pool.Points))
	}
	for i, p := range pool.Points {
		want := append(slices.Clone(a.Points[i].Runs), b.Points[i].Runs...)
		if !slices.Equal(p.Runs, want) {
			t.Errorf("%d workers: the pool's runs are not the first report's then the second's", p.Workers)
		}
		xs := make([]float64, len(want))
		for k, r := range want {
			xs[k] = r.SamplesPerSecond
		}
		if p.SamplesPerSecond != xs[medianIndex(xs)] {
			t.Errorf("%d workers: pooled median %g, want %g", p.Workers, p.SamplesPerSecond, xs[medianIndex(xs)])
		}
	}
	if want := pool.Points[1].SamplesPerSecond / (2 * pool.Points[0].SamplesPerSecond); !closeTo(pool.Points[1].Efficiency, want) {
		t.Errorf("pooled efficiency %g, want %g", pool.Points[1].Efficiency, want)
	}

	if _, err := Pool(a, measure(1, "--batch", "128")); err == nil || !strings.Contains(err.Error(), "training flags") {
		t.Errorf("pooling reports of different training flags: %v", err)
	}
	if _, err := Pool(); err == nil {
		t.Error("pooling no report succeeded")
	}
}

// TestFromPools: --from with several files redraws the pooled report, with
// its interval in the table.
func TestFromPools(t *testing.T) {
	var files []string
	for range 2 {
		dir := t.TempDir()
		o := Options{Workers: []int{1, 2}, Steps: 5, Repeat: 2, Threads: 1, Out: dir, Cores: 2, Timeout: defaultTimeout}
		fl := &fakeLauncher{x1: 1000, eff: func(n int) float64 { return 0.9 }}
		rep, err := Measure(context.Background(), o, fl, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteOutputs(rep, dir); err != nil {
			t.Fatal(err)
		}
		files = append(files, filepath.Join(dir, "scaling.json"))
	}
	out := t.TempDir()
	var stdout bytes.Buffer
	if err := Main(context.Background(), []string{"--from", strings.Join(files, ","), "--out", out}, &stdout, io.Discard, "unused"); err != nil {
		t.Fatal(err)
	}
	checkOutputs(t, out, []int{1, 2})
	for _, want := range []string{"4 repeat(s)", "95% CI", "over the 4 rounds"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}
}

// FuzzReadReport: a scaling.json of any content is decoded, pooled with
// itself, given its intervals and printed without a panic.
func FuzzReadReport(f *testing.F) {
	f.Add([]byte(`{"points":[{"workers":1,"threads_per_worker":1,"samples_per_second":10,"runs":[{"samples_per_second":10},{"samples_per_second":11},{"samples_per_second":9}]},` +
		`{"workers":2,"threads_per_worker":1,"samples_per_second":17,"runs":[{"samples_per_second":17},{"samples_per_second":0},{"samples_per_second":-3}]}]}`))
	f.Add([]byte(`{"points":[{"workers":0,"runs":[]},{"workers":-2,"runs":[{"samples_per_second":1e308}]}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := ReadReport(bytes.NewReader(b))
		if err != nil {
			return
		}
		if pool, err := Pool(rep, rep); err == nil {
			if pool.Repeat != 2*rep.Repeat || len(pool.Points) != len(rep.Points) {
				t.Fatalf("pooled a report with itself into %d repeats and %d points, from %d and %d", pool.Repeat, len(pool.Points), rep.Repeat, len(rep.Points))
			}
			rep = pool
		}
		setEfficiencyIntervals(rep.Points)
		if err := rep.WriteTable(io.Discard); err != nil {
			t.Fatal(err)
		}
		if err := rep.WriteCSV(io.Discard); err != nil {
			t.Fatal(err)
		}
	})
}

package model

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// BenchmarkStep measures one training step of the default towers in float32
// (ZeroGrad, Forward and Backward of the image and the text tower) on a batch
// of 256 and reports samples per second.
func BenchmarkStep(bm *testing.B) {
	const b = 256
	step := newBenchStep(bm, b)
	step() // allocate the caches
	bm.ReportAllocs()
	bm.ResetTimer()
	for bm.Loop() {
		step()
	}
	bm.ReportMetric(float64(b*bm.N)/bm.Elapsed().Seconds(), "samples/s")
}

// BenchmarkStepSpread runs the step of BenchmarkStep over and over and
// reports how its duration spreads from one step to the next: the 10th,
// 50th and 90th percentiles in ms, and the lag-1 autocorrelation of the
// durations (0 when each step's duration is independent of the last one's,
// near 1 when slow steps come in spells). Identical work on identical data,
// with no allocation: what spreads is the machine. Two ranks of a ring wait
// for each other at every collective, so this spread is what they lose.
// Run it with enough steps for the percentiles: -benchtime 1500x.
func BenchmarkStepSpread(bm *testing.B) {
	step := newBenchStep(bm, 256)
	for range 20 { // warm up
		step()
	}
	var d []float64
	bm.ResetTimer()
	for bm.Loop() {
		t0 := time.Now()
		step()
		d = append(d, float64(time.Since(t0).Nanoseconds())/1e6)
	}
	if len(d) < 10 {
		return
	}
	bm.ReportMetric(lag1Autocorrelation(d), "ac1")
	slices.Sort(d)
	for _, q := range []struct {
		p    float64
		unit string
	}{{0.1, "p10-ms"}, {0.5, "p50-ms"}, {0.9, "p90-ms"}} {
		bm.ReportMetric(d[int(q.p*float64(len(d)-1))], q.unit)
	}
}

// lag1Autocorrelation is r_1 = Σ_t (x_t − x̄)(x_{t+1} − x̄) / Σ_t (x_t − x̄)².
func lag1Autocorrelation(x []float64) float64 {
	var mean float64
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	var num, den float64
	for t, v := range x {
		den += (v - mean) * (v - mean)
		if t+1 < len(x) {
			num += (v - mean) * (x[t+1] - mean)
		}
	}
	if den == 0 {
		return 0
	}
	return num / den
}

func TestLag1Autocorrelation(t *testing.T) {
	for _, c := range []struct {
		name string
		x    []float64
		want float64
	}{
		{"constant", []float64{2, 2, 2, 2}, 0},
		// x̄ = 0: the three products are −1 each, Σx² = 4.
		{"alternating", []float64{1, -1, 1, -1}, -0.75},
		// x̄ = 0: the products are 1, −1 and 1, Σx² = 4.
		{"two spells", []float64{1, 1, -1, -1}, 0.25},
	} {
		if got := lag1Autocorrelation(c.x); got != c.want {
			t.Errorf("%s: r_1(%v) = %g, want %g", c.name, c.x, got, c.want)
		}
	}
}

// newBenchStep returns one step of the default towers in float32 on a batch
// of b random rows.
func newBenchStep(bm *testing.B, b int) func() {
	bm.Helper()
	cfg := DefaultConfig()
	cfg.TextVocab = 1000
	m, err := New[float32](cfg, 1)
	if err != nil {
		bm.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	x := make([]float32, b*cfg.ImageIn)
	for i := range x {
		x[i] = rng.Float32()
	}
	ids := make([]int32, 8*b)
	for i := range ids {
		ids[i] = int32(rng.IntN(cfg.TextVocab))
	}
	offsets := make([]int32, b)
	for i := range offsets {
		offsets[i] = int32(8 * i)
	}
	dEmb := make([]float32, b*cfg.Dim)
	for i := range dEmb {
		dEmb[i] = float32(rng.NormFloat64()) / 100
	}
	return func() {
		m.P.ZeroGrad()
		if _, err := m.Image.Forward(Rows(x, b)); err != nil {
			bm.Fatal(err)
		}
		if err := m.Image.Backward(dEmb); err != nil {
			bm.Fatal(err)
		}
		if _, err := m.Text.Forward(Bags[float32](ids, offsets, b)); err != nil {
			bm.Fatal(err)
		}
		if err := m.Text.Backward(dEmb); err != nil {
			bm.Fatal(err)
		}
	}
}

package scaling

import (
	"fmt"
	"math"
	"testing"
)

// synthetic observes a model exactly: each phase takes what the model says
// on links of bps bits per second (0: the model's own β).
func synthetic(m Model, workers []int, cores int, bps float64) []Observation {
	var obs []Observation
	for _, n := range workers {
		p := m.Predict(n, bps)
		b := float64(m.Batch) / float64(n)
		bd := Breakdown{
			ForwardMS:   0.4 * m.PerSampleMS * b,
			BackwardMS:  0.6 * m.PerSampleMS * b,
			LossMS:      m.PerLogitMS * b * float64(m.Batch),
			OptimizerMS: m.FixedMS,
			GatherMS:    p.GatherMS + 0.25*p.LatencyMS,
			ReduceMS:    p.AllReduceMS + 0.75*p.LatencyMS,
		}
		bd.TotalMS = bd.ForwardMS + bd.BackwardMS + bd.LossMS + bd.OptimizerMS + bd.GatherMS + bd.ReduceMS
		obs = append(obs, Observation{Workers: n, Oversubscribed: n > cores, LinkBPS: bps, StepMS: bd.TotalMS, StepTime: bd})
	}
	return obs
}

func TestFitRecoversTheModel(t *testing.T) {
	truth := Model{Objective: "clip", Batch: 512, Dim: 64, GradBytes: 4 * 576641, GatherBytes: GatheredBytes("clip", 512, 64),
		FixedMS: 20, PerSampleMS: 0.18, PerLogitMS: 5e-5, HopMS: 0.3, MSPerByte: 8e-6 / 0.8, BandwidthEfficiency: 0.8}
	for _, tc := range []struct {
		name    string
		runs    map[float64][]int // link rate → worker counts
		hop     bool              // λ is identifiable
		eta     float64
		nominal float64
	}{
		{"loopback 1,2,4,8", map[float64][]int{0: {1, 2, 4, 8}}, true, 1, 0},
		{"1 Gbit/s 1,2,4", map[float64][]int{1e9: {1, 2, 4}}, true, 0.8, 1e9},
		{"two rates, 2 workers", map[float64][]int{1e9: {1, 2}, 250e6: {2}}, true, 0.8, 250e6},
		{"loopback and a limit", map[float64][]int{0: {1, 2, 4}, 1e9: {2, 4}}, true, 0.8, 1e9},
		{"only two workers", map[float64][]int{0: {1, 2}}, false, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := truth
			if !tc.hop {
				want.HopMS = 0
			}
			var obs []Observation
			for bps, ws := range tc.runs {
				obs = append(obs, synthetic(want, ws, 2, bps)...)
			}
			got, err := Fit(Model{Objective: "clip", Batch: 512, Dim: 64, GradBytes: truth.GradBytes, GatherBytes: truth.GatherBytes}, obs)
			if err != nil {
				t.Fatal(err)
			}
			wantBeta := want.MSPerByte
			if tc.nominal > 0 {
				wantBeta = 8e3 / (0.8 * tc.nominal)
			}
			for _, c := range []struct {
				name      string
				got, want float64
			}{
				{"c0", got.FixedMS, want.FixedMS}, {"cs", got.PerSampleMS, want.PerSampleMS}, {"cl", got.PerLogitMS, want.PerLogitMS},
				{"λ", got.HopMS, want.HopMS}, {"β", got.MSPerByte, wantBeta}, {"η", got.BandwidthEfficiency, tc.eta},
				{"nominal", got.NominalBitsPerSecond, tc.nominal},
			} {
				if math.Abs(c.got-c.want) > 1e-9*math.Max(1, math.Abs(c.want)) {
					t.Errorf("%s = %g, want %g", c.name, c.got, c.want)
				}
			}
		})
	}
}

func TestFitNeedsData(t *testing.T) {
	m := Model{Objective: "clip", Batch: 64, Dim: 8, GradBytes: 400, GatherBytes: GatheredBytes("clip", 64, 8)}
	if _, err := Fit(m, []Observation{{Workers: 1, StepMS: 10, StepTime: Breakdown{ForwardMS: 5, TotalMS: 5}}}); err == nil {
		t.Error("a fit without a multi-worker observation succeeded")
	}
	if _, err := Fit(m, []Observation{{Workers: 4, Oversubscribed: true, StepMS: 10}}); err == nil {
		t.Error("a fit without a compute observation succeeded")
	}
	if _, err := Fit(Model{}, nil); err == nil {
		t.Error("a fit without a batch succeeded")
	}
}

func TestPredict(t *testing.T) {
	m := Model{Batch: 256, GradBytes: 1e6, GatherBytes: 0, FixedMS: 1, PerSampleMS: 0.01, HopMS: 0.1, BandwidthEfficiency: 0.5}
	// One worker: no communication, efficiency 1.
	if p := m.Predict(1, 10e9); p.StepMS != 1+2.56 || p.Efficiency != 1 || p.LatencyMS != 0 {
		t.Errorf("Predict(1) = %+v", p)
	}
	// Four workers on 10 Gbit/s at η = 0.5: β = 8e3/(0.5·1e10) ms/byte;
	// all-reduce 2·3/4·1e6 bytes.
	p := m.Predict(4, 10e9)
	wantAR := 8e3 / 5e9 * 1.5e6
	if math.Abs(p.AllReduceMS-wantAR) > 1e-12 || math.Abs(p.LatencyMS-0.3) > 1e-12 || math.Abs(p.ComputeMS-1.64) > 1e-12 {
		t.Errorf("Predict(4) = %+v, want all-reduce %g", p, wantAR)
	}
	// A faster link never predicts a slower step.
	if m.Predict(64, 100e9).StepMS >= m.Predict(64, 10e9).StepMS {
		t.Error("100 Gbit/s is not faster than 10 Gbit/s")
	}
}

func ExampleEfficiency() {
	// 2 workers reach 7,200 samples/s where 1 worker reaches 4,000.
	fmt.Printf("%.2f\n", Efficiency(2, 7200, 1, 4000))
	// Against a baseline of 2 workers: 4 workers at 12,000 samples/s.
	fmt.Printf("%.3f\n", Efficiency(4, 12000, 2, 7200))
	// Output:
	// 0.90
	// 0.833
}

func ExampleFit() {
	// Step times of a CLIP run (B = 512, d = 64, 100k parameters) on 1, 2
	// and 4 workers on links limited to 1 Gbit/s: the compute halves with
	// each doubling while the all-reduce and the gather grow.
	obs := []Observation{
		{Workers: 1, LinkBPS: 1e9, StepMS: 60, StepTime: Breakdown{ForwardMS: 20, BackwardMS: 31.2, LossMS: 1.8, OptimizerMS: 7, TotalMS: 60}},
		{Workers: 2, LinkBPS: 1e9, StepMS: 39.31072, StepTime: Breakdown{ForwardMS: 10, BackwardMS: 15.6, LossMS: 0.9, OptimizerMS: 7, GatherMS: 1.81072, ReduceMS: 4, TotalMS: 39.31072}},
		{Workers: 4, LinkBPS: 1e9, StepMS: 29.71608, StepTime: Breakdown{ForwardMS: 5, BackwardMS: 7.8, LossMS: 0.45, OptimizerMS: 7, GatherMS: 2.46608, ReduceMS: 7, TotalMS: 29.71608}},
	}
	m := Model{Objective: "clip", Batch: 512, Dim: 64, GradBytes: 4e5, GatherBytes: GatheredBytes("clip", 512, 64)}
	m, err := Fit(m, obs)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("c0 %.1f ms, cs %.3f ms/sample, λ %.2f ms, %.2f Gbit/s (η %.2f)\n", m.FixedMS, m.PerSampleMS, m.HopMS, 8e-6/m.MSPerByte, m.BandwidthEfficiency)
	p := m.Predict(8, 0)
	fmt.Printf("8 workers: %.1f ms, efficiency %.2f\n", p.StepMS, p.Efficiency)
	// Output:
	// c0 7.0 ms, cs 0.100 ms/sample, λ 0.50 ms, 0.80 Gbit/s (η 0.80)
	// 8 workers: 26.4 ms, efficiency 0.28
}

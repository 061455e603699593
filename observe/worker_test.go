package observe

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/infonce/infonce/worker"
)

func TestBandwidth(t *testing.T) {
	for _, tc := range []struct {
		name         string
		s            int64
		t            time.Duration
		n            int
		algbw, busbw float64
	}{
		{"one rank moves nothing", 4 << 20, time.Millisecond, 1, 4194304e3, 0},
		{"two ranks: busbw = algbw", 1e6, 10 * time.Millisecond, 2, 1e8, 1e8},
		{"four ranks: 2·3/4", 4000, time.Millisecond, 4, 4e6, 6e6},
		{"eight ranks: 2·7/8", 8e9, 2 * time.Second, 8, 4e9, 7e9},
		{"no time measured", 1e6, 0, 4, 0, 0},
		{"no ranks", 1e6, time.Second, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alg, bus := Bandwidth(tc.s, tc.t, tc.n)
			if math.Abs(alg-tc.algbw) > 1e-9*math.Abs(tc.algbw) || math.Abs(bus-tc.busbw) > 1e-9*math.Abs(tc.busbw) {
				t.Errorf("Bandwidth(%d, %v, %d) = %g, %g; want %g, %g", tc.s, tc.t, tc.n, alg, bus, tc.algbw, tc.busbw)
			}
		})
	}
}

// stats is a step with the given times in milliseconds for every phase.
func stats(step int64, loss float64, reduceMS float64) worker.StepStats {
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	return worker.StepStats{Step: step, Epoch: int(step / 10), Loss: loss, LogitScale: 14.3, LR: 1e-3, GradNorm: 0.5,
		Times: worker.StepTimes{Data: ms(1), Forward: ms(2), Gather: ms(0.5), Loss: ms(0.25), Backward: ms(3), Reduce: ms(reduceMS), Optimizer: ms(0.75)}}
}

func TestWorkerMetrics(t *testing.T) {
	for _, tc := range []struct {
		name          string
		opt           WorkerOptions
		configure     *worker.Config // RunConfigured before the steps
		params        int
		world, steps  int
		reduceMS      float64
		samples       float64
		reduceBytes   float64
		algbw, busbw  float64
		gradientBytes float64
	}{
		{name: "one process", opt: WorkerOptions{Role: "train", Batch: 64}, world: 1, steps: 5, reduceMS: 0,
			samples: 5 * 64},
		{name: "batch unknown counts no samples", opt: WorkerOptions{}, world: 2, steps: 3, reduceMS: 1},
		{name: "four ranks, gradient known at the start", opt: WorkerOptions{Batch: 512, GradientBytes: 4000}, world: 4, steps: 10, reduceMS: 1,
			samples: 10 * 512, reduceBytes: 10 * 4000, algbw: 4e6, busbw: 6e6, gradientBytes: 4000},
		{name: "run configured later", opt: WorkerOptions{}, configure: &worker.Config{Batch: 256}, params: 1000, world: 2, steps: 4, reduceMS: 2,
			samples: 4 * 256, reduceBytes: 4 * 4000, algbw: 2e6, busbw: 2e6, gradientBytes: 4000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := NewRegistry()
			w, err := NewWorker(reg, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			if tc.configure != nil {
				w.RunConfigured(*tc.configure, tc.params)
			}
			w.GenerationStarted(3, tc.world-1, tc.world)
			for s := 0; s < tc.steps; s++ {
				w.StepDone(stats(int64(s), 5-float64(s)/10, tc.reduceMS), 3, tc.world-1, tc.world)
			}
			last := 5 - float64(tc.steps-1)/10
			for _, c := range []struct {
				name   string
				labels []string
				want   float64
			}{
				{"infonce_steps_total", nil, float64(tc.steps)},
				{"infonce_step", nil, float64(tc.steps)},
				{"infonce_samples_total", nil, tc.samples},
				{"infonce_loss", nil, last},
				{"infonce_logit_scale", nil, 14.3},
				{"infonce_learning_rate", nil, 1e-3},
				{"infonce_grad_norm", nil, 0.5},
				{"infonce_generation", nil, 3},
				{"infonce_world_size", nil, float64(tc.world)},
				{"infonce_rank", nil, float64(tc.world - 1)},
				{"infonce_generations_started_total", nil, 1},
				{"infonce_allreduce_bytes_total", nil, tc.reduceBytes},
				{"infonce_allreduce_algbw_bytes_per_second", nil, tc.algbw},
				{"infonce_allreduce_busbw_bytes_per_second", nil, tc.busbw},
				{"infonce_gradient_bytes", nil, tc.gradientBytes},
				{"infonce_step_seconds", nil, float64(tc.steps)},
				{"infonce_step_phase_seconds", []string{"phase", "backward"}, float64(tc.steps)},
				{"infonce_step_phase_seconds", []string{"phase", "reduce"}, float64(tc.steps)},
			} {
				got, ok := value(t, reg, c.name, c.labels...)
				if !ok || math.Abs(got-c.want) > 1e-9*math.Max(1, math.Abs(c.want)) {
					t.Errorf("%s%v = %g (present %v), want %g", c.name, c.labels, got, ok, c.want)
				}
			}
			h := w.Health()
			if h.Step != int64(tc.steps) || h.Generation != 3 || h.World != tc.world || h.Status != "training" {
				t.Errorf("health %+v", h)
			}
		})
	}
}

func TestWorkerPhaseHistogramBuckets(t *testing.T) {
	reg := NewRegistry()
	w, err := NewWorker(reg, WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.StepDone(stats(0, 1, 30), 1, 0, 2) // reduce 30 ms
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "infonce_step_phase_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() != "reduce" {
				continue
			}
			h := m.GetHistogram()
			if math.Abs(h.GetSampleSum()-0.030) > 1e-9 {
				t.Errorf("reduce sum %g, want 0.030", h.GetSampleSum())
			}
			for _, b := range h.GetBucket() {
				want := uint64(0)
				if b.GetUpperBound() >= 0.030 {
					want = 1
				}
				if b.GetCumulativeCount() != want {
					t.Errorf("bucket le=%g holds %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
				}
			}
			return
		}
	}
	t.Fatal("no reduce histogram")
}

func TestCheckpointAge(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	reg := NewRegistry()
	w, err := NewWorker(reg, WorkerOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := value(t, reg, "infonce_checkpoint_age_seconds"); ok {
		t.Error("checkpoint age exported before any checkpoint")
	}
	w.CheckpointSaved(200, "/runs/a/checkpoints/step-200")
	now = now.Add(90 * time.Second)
	if got, ok := value(t, reg, "infonce_checkpoint_age_seconds"); !ok || got != 90 {
		t.Errorf("checkpoint age %g (present %v), want 90", got, ok)
	}
	if got, _ := value(t, reg, "infonce_checkpoint_step"); got != 200 {
		t.Errorf("checkpoint step %g, want 200", got)
	}
	if h := w.Health(); h.Checkpoint != "/runs/a/checkpoints/step-200" {
		t.Errorf("health %+v", h)
	}
	w.CheckpointFailed(210, errors.New("no space left on device"))
	w.CheckpointFailed(220, errors.New("no space left on device"))
	if got, _ := value(t, reg, "infonce_checkpoint_failures_total"); got != 2 {
		t.Errorf("checkpoint failures %g, want 2", got)
	}
}

func TestTwoObserversInOneProcess(t *testing.T) {
	// Each process (or test) has its own registry: two observers never
	// collide, and nothing is registered globally.
	for range 2 {
		if _, err := NewWorker(NewRegistry(), WorkerOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	reg := NewRegistry()
	if _, err := NewWorker(reg, WorkerOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWorker(reg, WorkerOptions{}); err == nil {
		t.Error("a second worker observer on one registry was accepted")
	}
}

var (
	_ worker.Observer     = (*Worker)(nil)
	_ worker.SaveObserver = (*Worker)(nil)
	_ worker.EvalObserver = (*Worker)(nil)
)

// TestBadSampleMetric: the bad samples a step reports are exported by
// reason.
func TestBadSampleMetric(t *testing.T) {
	reg := NewRegistry()
	w, err := NewWorker(reg, WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := stats(0, 1, 3)
	st.BadSamples = map[string]int64{"corrupt-image": 3, "missing-text": 1}
	w.StepDone(st, 1, 0, 1)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "infonce_bad_samples" {
			for _, m := range mf.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	if got["corrupt-image"] != 3 || got["missing-text"] != 1 {
		t.Fatalf("infonce_bad_samples %v, want corrupt-image 3 and missing-text 1", got)
	}
}

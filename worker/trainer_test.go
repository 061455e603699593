package worker

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/dataset"
)

var (
	mnistOnce sync.Once
	mnist     *dataset.Set
	mnistErr  error
)

// smallMNIST is the first nTrain training and nTest test images of MNIST:
// real data, small enough for tests under the race detector.
func smallMNIST(t testing.TB, nTrain, nTest int) *dataset.Set {
	t.Helper()
	mnistOnce.Do(func() { mnist, mnistErr = dataset.MNIST() })
	if mnistErr != nil {
		t.Fatal(mnistErr)
	}
	cut := func(im dataset.Images, n int) dataset.Images {
		P := im.H * im.W
		return dataset.Images{N: n, H: im.H, W: im.W, Pixels: im.Pixels[:n*P], Labels: im.Labels[:n]}
	}
	return &dataset.Set{Name: "mnist-small", Train: cut(mnist.Train, nTrain), Test: cut(mnist.Test, nTest), Classes: mnist.Classes}
}

// smallConfig is a model small enough for unit tests.
func smallConfig(t testing.TB, objective string) Config {
	cfg := DefaultConfig()
	cfg.Objective = objective
	cfg.Batch = 64
	cfg.Steps = 40
	cfg.ImageHidden = []int{64}
	cfg.TextHidden = 32
	cfg.Dim = 16
	cfg.LR = 3e-3
	cfg.Warmup = 2
	cfg.LogEvery = 1
	cfg.Out = t.TempDir()
	if objective != CLIP {
		cfg.Temperature = 0.2
		cfg.LearnTemperature = false
		cfg.MoCoMomentum = 0.9
		cfg.MoCoQueue = 128
	}
	return cfg
}

func trainSteps(t *testing.T, tr *Trainer[float32], from, to int64) []float64 {
	t.Helper()
	var losses []float64
	for s := from; s < to; s++ {
		st, err := tr.Step(context.Background(), Single[float32]{}, s)
		if err != nil {
			t.Fatalf("step %d: %v", s, err)
		}
		losses = append(losses, st.Loss)
	}
	return losses
}

func TestShortCLIPRunLearns(t *testing.T) {
	set := smallMNIST(t, 8192, 1000)
	cfg := smallConfig(t, CLIP)
	cfg.Batch, cfg.Steps = 128, 60
	tr, err := NewTrainer[float32](cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	losses := trainSteps(t, tr, 0, cfg.Steps)
	lnB := math.Log(float64(cfg.Batch))
	last := mean(losses[len(losses)-5:])
	if last > lnB-1 {
		t.Errorf("loss after %d steps %.3f, want clearly below ln B = %.3f", cfg.Steps, last, lnB)
	}
	ev, err := tr.Evaluate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ev.ZeroShotTop1 == nil || *ev.ZeroShotTop1 < 0.5 {
		t.Errorf("zero-shot top-1 %v, want far above chance (0.1)", ev.ZeroShotTop1)
	}
	if ev.RecallI2TAt1 == nil || ev.ClassRecallI2T == nil || *ev.ClassRecallI2T < 0.5 {
		t.Errorf("class-level R@1 %v, want far above chance", ev.ClassRecallI2T)
	}
	t.Logf("losses %.3f → %.3f (ln B %.3f), zero-shot %.3f, probe %.3f, pixels %.3f",
		losses[0], last, lnB, *ev.ZeroShotTop1, ev.LinearProbeAccuracy, ev.PixelProbeAccuracy)
}

func TestSimCLRAndMoCoLossesFall(t *testing.T) {
	set := smallMNIST(t, 2048, 200)
	for _, tc := range []struct {
		objective string
		symmetric bool
	}{{SimCLR, false}, {MoCo, false}, {MoCo, true}} {
		t.Run(tc.objective, func(t *testing.T) {
			cfg := smallConfig(t, tc.objective)
			cfg.Steps = 40
			cfg.MoCoSymmetric = tc.symmetric
			tr, err := NewTrainer[float32](cfg, set)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			losses := trainSteps(t, tr, 0, cfg.Steps)
			// MoCo's loss first rises while real keys replace the queue's
			// random ones; compare from the first step with a full queue.
			from := 0
			if tc.objective == MoCo {
				from = cfg.MoCoQueue/cfg.Batch + 1
			}
			first, last := mean(losses[from:from+3]), mean(losses[len(losses)-3:])
			if !(last < first-0.1) {
				t.Errorf("loss %.3f → %.3f, want a clear fall", first, last)
			}
		})
	}
}

func TestSameSeedSameParameters(t *testing.T) {
	set := smallMNIST(t, 1024, 100)
	sha := func() string {
		cfg := smallConfig(t, CLIP)
		tr, err := NewTrainer[float32](cfg, set)
		if err != nil {
			t.Fatal(err)
		}
		trainSteps(t, tr, 0, 5)
		return ParamSHA256(tr.Model.P.W)
	}
	if a, b := sha(), sha(); a != b {
		t.Fatalf("same seed gave different parameters: %s vs %s", a, b)
	}
}

// TestResumeIsBitExact stops after 4 steps, saves, restores into a fresh
// trainer and continues: the parameters equal an uninterrupted run's.
func TestResumeIsBitExact(t *testing.T) {
	set := smallMNIST(t, 1024, 100)
	for _, objective := range []string{CLIP, MoCo} {
		t.Run(objective, func(t *testing.T) {
			cfg := smallConfig(t, objective)
			whole, err := NewTrainer[float32](cfg, set)
			if err != nil {
				t.Fatal(err)
			}
			want := trainSteps(t, whole, 0, 8)

			first, _ := NewTrainer[float32](cfg, set)
			got := trainSteps(t, first, 0, 4)
			if _, err := first.Save(context.Background(), 4, 0); err != nil {
				t.Fatal(err)
			}
			second, _ := NewTrainer[float32](cfg, set)
			st := &checkpoint.Store{Root: CheckpointDir(cfg.Out)}
			c, err := st.LoadLatest(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			next, err := second.Restore(c)
			if err != nil {
				t.Fatal(err)
			}
			if next != 4 {
				t.Fatalf("resume at step %d, want 4", next)
			}
			got = append(got, trainSteps(t, second, 4, 8)...)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("step %d: loss %v after resume, %v uninterrupted", i, got[i], want[i])
				}
			}
			if a, b := ParamSHA256(second.Model.P.W), ParamSHA256(whole.Model.P.W); a != b {
				t.Fatalf("parameters differ after resume: %s vs %s", a, b)
			}
		})
	}
}

func TestNonFiniteLossLeavesParametersUntouched(t *testing.T) {
	set := smallMNIST(t, 1024, 100)
	cfg := smallConfig(t, CLIP)
	tr, err := NewTrainer[float32](cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	trainSteps(t, tr, 0, 2)
	before := ParamSHA256(tr.Model.P.W)
	tr.faultHook = func(step int64, g []float32) { g[len(g)/2] = float32(math.NaN()) }
	_, err = tr.Step(context.Background(), Single[float32]{}, 2)
	if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "step 2") {
		t.Fatalf("err = %v, want ErrNonFinite naming step 2", err)
	}
	if after := ParamSHA256(tr.Model.P.W); after != before {
		t.Fatal("a non-finite step changed the parameters")
	}
	if _, err := tr.Save(context.Background(), 3, 0); err != nil {
		t.Fatalf("the finite parameters could not be saved: %v", err)
	}
}

func TestBadConfigErrorsNameTheFlag(t *testing.T) {
	set := smallMNIST(t, 1024, 100)
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"objective", func(c *Config) { c.Objective = "byol" }, "--objective"},
		{"batch too large", func(c *Config) { c.Batch = 5000 }, "--batch"},
		{"queue", func(c *Config) { c.Objective = MoCo; c.MoCoQueue = 100 }, "--moco-queue"},
		{"lr", func(c *Config) { c.LR = math.NaN() }, "--lr"},
		// τ outside the clamp of the logit scale would be silently clamped.
		{"temperature above the clamp", func(c *Config) { c.Temperature = 2 }, "--temperature 2: τ must be in [0.01, 1]"},
		{"temperature below the clamp", func(c *Config) { c.Temperature = 0.005 }, "--temperature 0.005"},
		{"image tower", func(c *Config) { c.ImageTower = "resnet-9000" }, "--image-tower"},
		{"text tower", func(c *Config) { c.TextTower = "mlp" }, "--text-tower"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := smallConfig(t, CLIP)
			tc.edit(&cfg)
			_, err := NewTrainer[float32](cfg, set)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %s", err, tc.want)
			}
		})
	}
}

func TestRunLocalWritesMetricsAndSummary(t *testing.T) {
	set := smallMNIST(t, 1024, 200)
	cfg := smallConfig(t, CLIP)
	cfg.Steps = 6
	cfg.LogEvery = 2
	var progress strings.Builder
	sum, err := RunLocal(context.Background(), cfg, set, Options{Progress: &progress, Evaluate: true})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(cfg.Out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(data), "\n"); lines != 3 {
		t.Errorf("metrics.jsonl has %d lines, want 3 (every 2 of 6 steps)", lines)
	}
	for _, field := range []string{`"step"`, `"epoch"`, `"loss"`, `"logit_scale"`, `"lr"`, `"samples_per_second"`, `"time"`, `"workers"`, `"generation"`} {
		if !strings.Contains(string(data), field) {
			t.Errorf("metrics.jsonl lacks %s", field)
		}
	}
	summary, err := os.ReadFile(filepath.Join(cfg.Out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"objective", "data", "workers", "steps", "samples", "final_loss", "zero_shot_top1", "zero_shot_top5",
		"linear_probe_accuracy", "pixel_probe_accuracy", "recall_i2t_at_1", "recall_t2i_at_1", "samples_per_second",
		"wall_seconds", "peak_rss_bytes", "param_sha256"} {
		if !strings.Contains(string(summary), `"`+field+`"`) {
			t.Errorf("summary.json lacks %s", field)
		}
	}
	if sum.ParamSHA256 == "" || sum.Steps != 6 || !strings.Contains(progress.String(), "step 6/6") {
		t.Errorf("summary %+v, progress %q", sum, progress.String())
	}
	loaded, err := LoadForEval(context.Background(), CheckpointDir(cfg.Out))
	if err != nil {
		t.Fatal(err)
	}
	if got := ParamSHA256(loaded.Model.P.W); got != sum.ParamSHA256 {
		t.Fatalf("loaded checkpoint has parameters %s, the run ended with %s", got, sum.ParamSHA256)
	}
}

func mean(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// TestRunLocalSkipsNonFiniteSteps: injected NaN gradients are skipped with
// the parameters untouched, and too many in a row stop the run naming the
// steps.
func TestRunLocalSkipsNonFiniteSteps(t *testing.T) {
	set := smallMNIST(t, 1024, 100)
	cfg := smallConfig(t, CLIP)
	cfg.Steps = 8
	sum, err := RunLocal(context.Background(), cfg, set, Options{MaxBadSteps: 3, Faults: Faults{NaNSteps: []int64{2, 3}}})
	if err != nil {
		t.Fatalf("two bad steps with --max-bad-steps 3: %v", err)
	}
	if sum.Steps != 8 || !allFinite(mustParams(t, cfg.Out)) {
		t.Fatalf("summary %+v", sum)
	}
	cfg.Out = t.TempDir()
	_, err = RunLocal(context.Background(), cfg, set, Options{MaxBadSteps: 3, Faults: Faults{NaNSteps: []int64{2, 3, 4}}})
	if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "steps 2 to 4") {
		t.Fatalf("three bad steps with --max-bad-steps 3: err = %v", err)
	}
}

// mustParams loads the parameters of the run's latest checkpoint.
func mustParams(t *testing.T, out string) []float32 {
	t.Helper()
	tr, err := LoadForEval(context.Background(), CheckpointDir(out))
	if err != nil {
		t.Fatal(err)
	}
	return tr.Model.P.W
}

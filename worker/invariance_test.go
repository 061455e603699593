package worker

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/infonce/infonce/allreduce"
)

// invarianceSteps is the length of the runs compared below: long enough to
// pass the points where a ReLU run of this configuration has been seen to
// leave the one-process trajectory (steps 40 to 47 for seed 1), short
// enough for the race detector.
func invarianceSteps() int64 {
	if raceEnabled {
		return 40
	}
	return 150
}

// invarianceConfig is the CLIP run of the comparisons: global batch 128 of
// MNIST, one hidden layer of 64 units, text width 32, d = 16, AdamW.
func invarianceConfig(t *testing.T, activation string, steps int64) Config {
	cfg := DefaultConfig()
	cfg.ImageHidden = []int{64}
	cfg.TextHidden, cfg.Dim = 32, 16
	cfg.Batch, cfg.Steps = 128, steps
	cfg.Activation = activation
	cfg.Out = t.TempDir()
	return cfg
}

// lockstep trains one process and K in-memory ranks side by side on the
// same global batches for steps steps. With resync, every rank starts each
// step from the one process's parameters (bit for bit), so that each step
// compares the two computations of the same gradient; without it, both
// runs go their own way from the common initialisation. check sees both
// after every step.
func lockstep(t *testing.T, cfg Config, K int, steps int64, resync bool,
	check func(step int64, one *Trainer[float32], oneLoss float64, ranks []*Trainer[float32], loss float64)) {
	t.Helper()
	set := smallMNIST(t, 1280, 10)
	rings, err := allreduce.NewMemRings(K, allreduce.Config{JobID: "invariance"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, r := range rings {
			r.Close()
		}
	}()
	one, err := NewTrainer[float32](cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	ranks := make([]*Trainer[float32], K)
	for k := range ranks {
		if ranks[k], err = NewTrainer[float32](cfg, set); err != nil {
			t.Fatal(err)
		}
		defer ranks[k].Close()
	}
	ctx := context.Background()
	losses, errs := make([]float64, K), make([]error, K)
	for s := range steps {
		if resync {
			for _, tr := range ranks {
				copy(tr.Model.P.W, one.Model.P.W)
			}
		}
		st, err := one.Step(ctx, Single[float32]{}, s)
		if err != nil {
			t.Fatalf("one process, step %d: %v", s, err)
		}
		var wg sync.WaitGroup
		for k, tr := range ranks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := tr.Step(ctx, rings[k], s)
				losses[k], errs[k] = st.Loss, err
				if err != nil {
					errs[k] = fmt.Errorf("rank %d, step %d: %w", k, s, err)
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		check(s, one, st.Loss, ranks, losses[0])
		if t.Failed() {
			return
		}
	}
}

// TestInvariantHoldsAlongTheRun is DESIGN's invariant (step 6) at every
// step of a real training run rather than only at the first: from the same
// parameters, 3 ranks with B/3 samples each produce the loss and the
// gradient of one process with B samples, to float32 rounding, for every
// parameter tensor (logit scale included), at each of the run's steps.
func TestInvariantHoldsAlongTheRun(t *testing.T) {
	steps := invarianceSteps()
	cfg := invarianceConfig(t, "relu", steps)
	worstLoss, worstGrad, worstName := 0.0, 0.0, ""
	lockstep(t, cfg, 3, steps, true, func(s int64, one *Trainer[float32], oneLoss float64, ranks []*Trainer[float32], loss float64) {
		d := math.Abs(loss-oneLoss) / math.Abs(oneLoss)
		worstLoss = math.Max(worstLoss, d)
		if d > 1e-6 {
			t.Errorf("step %d: loss %v on 3 ranks, %v on one process (rel %.2g)", s, loss, oneLoss, d)
		}
		p := one.Model.P
		for k, tr := range ranks {
			for _, seg := range p.Segments {
				_, want := p.View(seg)
				_, got := tr.Model.P.View(seg)
				d := relDiff(got, want)
				if d > worstGrad {
					worstGrad, worstName = d, seg.Name
				}
				if d > 1e-5 {
					t.Errorf("step %d, rank %d: gradient of %s differs from the one process's by %.2g relative", s, k, seg.Name, d)
				}
			}
		}
	})
	t.Logf("%d steps: largest relative difference of the loss %.2g, of a gradient tensor %.2g (%s)", steps, worstLoss, worstGrad, worstName)
}

// TestSmoothRunFollowsOneProcess trains a GELU model on 3 ranks and on one
// process, each on its own from the same start, and requires the losses to
// agree within 1e-4 relative at every step: the float32 rounding
// differences of the gradient sums (~1e-7 relative) must stay at rounding
// level and not grow.
//
// The model is smooth on purpose. With ReLU, a hidden pre-activation that
// lands within a few units in the last place of zero (it happens every few
// hundred steps) takes the sign its rounding gives it, which can differ
// between the two runs; the derivative of that one unit for that one sample
// is then 1 in one run and 0 in the other, and the runs part ways for good.
// That is a property of float32 arithmetic at the kink, not of any kernel;
// TestInvariantHoldsAlongTheRun covers ReLU step by step instead.
func TestSmoothRunFollowsOneProcess(t *testing.T) {
	steps := invarianceSteps()
	cfg := invarianceConfig(t, "gelu", steps)
	worst := 0.0
	lockstep(t, cfg, 3, steps, false, func(s int64, _ *Trainer[float32], oneLoss float64, _ []*Trainer[float32], loss float64) {
		d := math.Abs(loss-oneLoss) / math.Abs(oneLoss)
		worst = math.Max(worst, d)
		if !(d <= 1e-4) {
			t.Errorf("step %d: loss %v on 3 ranks, %v on one process (rel %.2g)", s, loss, oneLoss, d)
		}
	})
	t.Logf("%d steps: largest relative loss difference %.2g", steps, worst)
}

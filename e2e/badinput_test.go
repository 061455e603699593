package e2e

import (
	"context"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/internal/testcluster"
	"github.com/infonce/infonce/worker"
)

// TestNonFiniteSteps injects a NaN into one worker's gradient at two steps:
// the all-reduce spreads it, so every rank skips both steps alike (no
// update, the sampler moves on) with a warning, and the run finishes with
// the losses of a one-worker run with the same fault. With --max-bad-steps
// 3 and three bad steps in a row the run stops with a clear error, and the
// checkpoint it leaves holds finite parameters.
func TestNonFiniteSteps(t *testing.T) {
	needSetup(t)
	const steps = 40
	nan := []string{worker.EnvFaultNaNSteps + "=5,6"}
	skipped := map[int64]bool{5: true, 6: true}
	t.Run("skip", func(t *testing.T) {
		ref := referenceRunWith(t, steps, nil, nan...)
		c := newCluster(t, clusterOpts{workers: 3, steps: steps})
		c.AddWorker(nil)
		c.AddWorker(nan)
		c.AddWorker(nil)
		c.WaitDone(2 * time.Minute)
		for name, p := range c.Workers {
			if n := strings.Count(p.Output(), "step skipped"); n != 2 {
				t.Errorf("%s warned of %d skipped steps, want 2", name, n)
			}
		}
		ranksSkipping := map[int64]int{}
		for _, r := range readSamples(t, c.Dir) {
			if r.Event == "skipped" {
				ranksSkipping[r.Step]++
			}
		}
		if ranksSkipping[5] != 3 || ranksSkipping[6] != 3 || len(ranksSkipping) != 2 {
			t.Errorf("ranks skipping each step: %v, want steps 5 and 6 skipped by all 3", ranksSkipping)
		}
		worst := compareLosses(t, c.Dir, c.Out, ref, 1e-4, skipped)
		lineage(t, c.Dir, c.Out, steps, ref.batch, skipped)
		assertFiniteCheckpoint(t, c.Out)
		t.Logf("FIGURE nan-skip: steps 5 and 6 skipped by all 3 ranks, worst |Δloss| against a 1-worker run with the same fault %.2g", worst)
	})
	t.Run("max-bad-steps", func(t *testing.T) {
		c := newCluster(t, clusterOpts{workers: 2, steps: steps, coordArgs: []string{"--max-bad-steps", "3"}})
		bad := []string{worker.EnvFaultNaNSteps + "=10,11,12"}
		a, b := c.AddWorker(bad), c.AddWorker(nil)
		for _, p := range []*proc{a, b, c.Coord} {
			err := p.Wait(t, 2*time.Minute)
			if err == nil {
				t.Errorf("%s exited cleanly after 3 non-finite steps in a row", p.Name)
			}
		}
		for _, p := range []*proc{a, b} {
			if !strings.Contains(p.Output(), "3 non-finite steps in a row (steps 10 to 12, --max-bad-steps 3)") {
				c.Dump()
				t.Errorf("%s: no clear error", p.Name)
			}
		}
		if !strings.Contains(c.Coord.Output(), "run aborted") {
			t.Error("the coordinator did not report the aborted run")
		}
		m := assertFiniteCheckpoint(t, c.Out)
		if m.Step != 13 {
			t.Errorf("the checkpoint after the abort is at step %d, want 13 (steps 10-12 skipped)", m.Step)
		}
	})
}

// assertFiniteCheckpoint loads the latest checkpoint of out and checks that
// its parameters are finite.
func assertFiniteCheckpoint(t *testing.T, out string) checkpoint.Manifest {
	t.Helper()
	c, err := (&checkpoint.Store{Root: worker.CheckpointDir(out)}).LoadLatest(context.Background())
	if err != nil {
		t.Fatalf("latest checkpoint: %v", err)
	}
	b, err := c.Blob("params")
	if err != nil {
		t.Fatal(err)
	}
	w, err := checkpoint.BytesFloat32(b)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range w {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("checkpoint %s: parameter %d is %v", c.Dir, i, v)
		}
	}
	return c.Manifest
}

// TestBadInput: a worker started with a configuration that disagrees with
// the run's is refused with an error naming the fields, and the run is not
// disturbed; a checkpoint of a model of another shape is refused with a
// clear error, by a distributed run before any worker starts and by a
// single-process run.
func TestBadInput(t *testing.T) {
	needSetup(t)
	const steps = 150
	ref := referenceRun(t, steps)
	c := newCluster(t, clusterOpts{workers: 2, min: 2, max: 3, steps: steps})
	c.AddWorker(nil)
	c.AddWorker(nil)
	c.WaitStep(20, 90*time.Second)
	stranger := c.AddWorker(nil, "--hidden", "32", "--batch", "64")
	err := stranger.Wait(t, 30*time.Second)
	if err == nil {
		t.Fatal("a worker with another configuration joined")
	}
	out := stranger.Output()
	for _, want := range []string{"does not match the run", `hidden: run has "64", worker has "32"`, `batch: run has "128", worker has "64"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, testcluster.Tail(out, 5))
		}
	}
	c.WaitDone(2*time.Minute, stranger.Name)
	for _, m := range testcluster.ReadMetrics(t, c.Out) {
		if m.Generation != 1 {
			t.Fatalf("step %d ran in generation %d: the refused worker disturbed the run", m.Step, m.Generation)
		}
	}
	compareLosses(t, c.Dir, c.Out, ref, 1e-5, nil)

	// The run's checkpoints, resumed with another model shape.
	other := append(trainArgs(c.Out, steps+10), "--hidden", "32", "--no-eval", "--resume", "latest")
	for _, args := range [][]string{
		append([]string{"train", "--workers", "2"}, other...),
		append([]string{"train"}, other...),
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, binary, args...)
		b, err := cmd.CombinedOutput()
		cancel()
		if err == nil {
			t.Errorf("%v: resumed a checkpoint of another shape", args[:3])
			continue
		}
		if s := string(b); !strings.Contains(s, "another shape") && !strings.Contains(s, "different run") {
			t.Errorf("%v: unclear error:\n%s", args[:3], testcluster.Tail(s, 5))
		} else {
			t.Logf("%v: %s", args[:3], strings.TrimSpace(testcluster.Tail(s, 1)))
		}
	}
}

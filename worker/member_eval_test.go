package worker

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/infonce/infonce/rundir"
)

// evalRecorder is an observer that keeps the evaluations it is told of.
type evalRecorder struct {
	nopObserver
	mu   sync.Mutex
	done []int64
}

func (r *evalRecorder) Evaluated(done int64, ev Evaluation) {
	r.mu.Lock()
	r.done = append(r.done, done)
	r.mu.Unlock()
}

// runEvalPair runs cfg with two workers in this process against an
// in-process coordinator and returns rank 0's summary and the
// evaluations its observer saw (the observers of both workers share obs).
// The stall deadlines are tight (a few times a step, at least 300 ms), and
// each evaluation is made evalDelay longer than it is.
func runEvalPair(t *testing.T, cfg Config, evalDelay time.Duration, obs *evalRecorder) *Summary {
	t.Helper()
	sums, errs, served := runPair(t, "evalevery", RunSpec{Config: cfg, MaxBadSteps: 3}, func(_ int, o *MemberOptions) {
		o.Out, o.Observer, o.Faults = cfg.Out, obs, Faults{EvalDelay: evalDelay}
		o.Stall = StallPolicy{Floor: 300 * time.Millisecond, Ceiling: 20 * time.Second, Mult: 4, Window: 8}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	if served != nil {
		t.Fatalf("coordinator: %v", served)
	}
	for _, s := range sums {
		if s != nil {
			return s
		}
	}
	t.Fatal("no summary from rank 0")
	return nil
}

// TestMemberEvalEvery: with two workers, --eval-every 3 over 8 steps has
// rank 0 evaluate after steps 3 and 6 into metrics.jsonl and tell its
// observer, without changing the training (the final parameters are those
// of the same run without --eval-every) and without a new generation,
// though each evaluation outlasts the stall deadline of the step's
// collectives several times over: the other rank waits for it outside
// those deadlines.
func TestMemberEvalEvery(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a coordinator and two workers twice; skipped with -short")
	}
	dir := t.TempDir()
	cfg := sourceConfig(t, CLIP, writeShapes(t, filepath.Join(dir, "train"), 8, 0))
	cfg.DataOptions.ValData = writeShapes(t, filepath.Join(dir, "val"), 2, 0)
	cfg.Batch, cfg.Steps, cfg.ImageHidden, cfg.TextHidden, cfg.Dim = 16, 8, []int{16}, 16, 8

	plain := runEvalPair(t, cfg, 0, &evalRecorder{})

	cfg.Out, cfg.EvalEvery = t.TempDir(), 3
	obs := &evalRecorder{}
	const delay = 1500 * time.Millisecond // over the 300 ms floor of the stall deadline
	evald := runEvalPair(t, cfg, delay, obs)

	if evald.ParamSHA256 != plain.ParamSHA256 {
		t.Errorf("param_sha256 %s with --eval-every, %s without: the evaluation changed the training", evald.ParamSHA256, plain.ParamSHA256)
	}
	if evald.Generation != plain.Generation {
		t.Errorf("ended in generation %d with --eval-every, %d without: a wait for the evaluation was taken for a stall", evald.Generation, plain.Generation)
	}
	if evald.Workers != 2 {
		t.Errorf("summary: %d workers, want 2", evald.Workers)
	}
	if evald.TrainSeconds <= 0 {
		t.Errorf("train seconds %v", evald.TrainSeconds)
	}
	ms, _, err := rundir.ReadMetrics(cfg.Out)
	if err != nil {
		t.Fatal(err)
	}
	var steps []int64
	for _, m := range rundir.Evaluations(ms) {
		steps = append(steps, m.Step)
		if m.Workers != 2 || m.Eval.ZeroShotTop1 == nil || m.Eval.RecallI2TAt1 == nil {
			t.Errorf("step %d: evaluation line %+v: want 2 workers, zero-shot and retrieval", m.Step, m)
		}
	}
	if fmt.Sprint(steps) != "[2 5]" {
		t.Errorf("evaluation lines after steps %v (0-based), want [2 5]", steps)
	}
	if got := len(rundir.History(ms)); got != 8 {
		t.Errorf("%d step lines, want 8", got)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if fmt.Sprint(obs.done) != "[3 6]" {
		t.Errorf("observer told of evaluations after %v completed steps, want [3 6]", obs.done)
	}
}

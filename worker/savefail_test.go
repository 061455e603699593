package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infonce/infonce/rundir"
)

// TestRunLocalSaveFailures: a periodic save that fails (an injected full
// disk) is retried at the next interval, counted in metrics.jsonl and
// summary.json, and loses nothing; --max-save-failures failures in a row
// stop the run with one clear error.
func TestRunLocalSaveFailures(t *testing.T) {
	set := smallMNIST(t, 1024, 100)
	cfg := smallConfig(t, CLIP)
	cfg.Steps, cfg.CheckpointEvery = 10, 2
	sum, err := RunLocal(context.Background(), cfg, set, Options{Faults: Faults{SaveFailSteps: []int64{2, 4}}})
	if err != nil {
		t.Fatalf("two failed saves with --max-save-failures 3: %v", err)
	}
	if sum.CheckpointFailures != 2 {
		t.Errorf("summary counts %d failed saves, want 2", sum.CheckpointFailures)
	}
	if got := checkpointSteps(t, cfg.Out); fmt.Sprint(got) != "[6 8 10]" {
		t.Errorf("checkpoints at steps %v, want [6 8 10] (2 and 4 failed)", got)
	}
	ms, _, err := rundir.ReadMetrics(cfg.Out)
	if err != nil {
		t.Fatal(err)
	}
	if last := ms[len(ms)-1]; last.CheckpointFailures != 2 {
		t.Errorf("the last metrics line counts %d failed saves, want 2", last.CheckpointFailures)
	}

	cfg.Out = t.TempDir()
	_, err = RunLocal(context.Background(), cfg, set, Options{MaxSaveFailures: 3, Faults: Faults{SaveFailSteps: []int64{2, 4, 6}}})
	if !errors.Is(err, ErrSaveFailures) || !strings.Contains(err.Error(), "--max-save-failures 3") || !strings.Contains(err.Error(), "after step 6") {
		t.Fatalf("three failed saves in a row: err = %v", err)
	}
}

// TestMemberSaveFailures: rank 0's periodic saves fail; every rank learns
// it in the step's ShareSave, the run goes on while fewer than
// --max-save-failures fail in a row, and at the limit every rank stops at
// the same step with the same error (no rank is removed on its own).
func TestMemberSaveFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a coordinator and two workers; skipped with -short")
	}
	for _, tc := range []struct {
		name    string
		fail    []int64
		wantErr bool
	}{
		{"one failure is retried", []int64{2}, false},
		{"three in a row stop every rank", []int64{2, 4, 6}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sums, errs := runTwoMembers(t, 10, 2, Faults{SaveFailSteps: tc.fail})
			if !tc.wantErr {
				for i, err := range errs {
					if err != nil {
						t.Fatalf("worker %d: %v", i, err)
					}
				}
				for _, s := range sums {
					if s != nil && s.CheckpointFailures != len(tc.fail) {
						t.Errorf("summary counts %d failed saves, want %d", s.CheckpointFailures, len(tc.fail))
					}
				}
				return
			}
			// Every rank stops with the abort; a rank behind the others
			// may learn of it from the coordinator's stop, which quotes
			// the error of a rank that met it (at least rank 0 does).
			met := 0
			for i, err := range errs {
				if !errors.Is(err, ErrAborted) || !strings.Contains(err.Error(), "3 checkpoint saves in a row failed (the last after step 6") {
					t.Errorf("worker %d: err = %v, want every rank to stop after the third failed save", i, err)
				}
				if errors.Is(err, ErrSaveFailures) {
					met++
				}
			}
			if met == 0 {
				t.Errorf("no rank ended with ErrSaveFailures: %v", errs)
			}
		})
	}
}

// TestMemberFinalSaveFails: when the final checkpoint cannot be written,
// rank 0 aborts the run as a whole (the coordinator stops every rank)
// instead of being removed so that the next rank meets the same failure;
// the other rank, told of it by the stop, ends with the same abort.
func TestMemberFinalSaveFails(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a coordinator and two workers; skipped with -short")
	}
	_, errs := runTwoMembers(t, 6, 0, Faults{SaveFailSteps: []int64{6}})
	var aborted, other int
	for i, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, ErrAborted) && strings.Contains(err.Error(), "final checkpoint (step 6)"):
			// rank 0's own error, or the stop's reason that quotes it
			aborted++
		default:
			other++
			t.Errorf("worker %d: %v", i, err)
		}
	}
	if aborted != 2 || other != 0 {
		t.Errorf("%d workers ended aborted by the final save and %d otherwise; want both, rank 0 aborting the run", aborted, other)
	}
}

// runTwoMembers trains steps steps on two in-process workers (both given
// faults and their own --out) against an in-process coordinator, saving
// every ckpt steps. The coordinator's run directory, which workers given
// --out ignore, must stay empty.
func runTwoMembers(t *testing.T, steps, ckpt int64, faults Faults) ([]*Summary, []error) {
	t.Helper()
	out, coordOut := t.TempDir(), t.TempDir()
	defer func() {
		if ents, err := os.ReadDir(coordOut); err != nil || len(ents) > 0 {
			t.Errorf("workers given --out wrote into the coordinator's run directory: %v %v", ents, err)
		}
	}()
	cfg := smallConfig(t, CLIP)
	cfg.Batch, cfg.ImageHidden, cfg.TextHidden, cfg.Dim = 32, []int{16}, 16, 8
	cfg.Steps, cfg.Out, cfg.CheckpointEvery, cfg.RunID = steps, coordOut, ckpt, "two-members"
	sums, errs, _ := runPair(t, "savefail", RunSpec{Config: cfg, MaxBadSteps: 3, MaxSaveFailures: 3}, func(_ int, o *MemberOptions) {
		o.Out, o.Faults = out, faults
		// These tests count saves per generation: a loaded machine must
		// not break the ring for a stall (an extra generation).
		o.Stall = StallPolicy{Floor: 20 * time.Second, Ceiling: 20 * time.Second, Mult: 4, Window: 32}
	})
	return sums, errs
}

// TestMemberJoinTimeout: a worker given an address where no coordinator
// answers says so while it retries and gives up after its join timeout.
func TestMemberJoinTimeout(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(b)
	}), &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := RunMember(ctx, MemberOptions{Coordinator: "127.0.0.1:1", Name: "lost", DataBind: "127.0.0.1:0",
		Logger: log, JoinTimeout: time.Second, NoSharedMemory: true})
	if err == nil || !strings.Contains(err.Error(), "--join-timeout") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("err = %v, want one naming the address and --join-timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("gave up after %v, want about 1s", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "level=INFO") || !strings.Contains(logs.String(), "coordinator=127.0.0.1:1") {
		t.Errorf("no Info line naming the coordinator:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSupervision scripts the launcher's restart decisions: a failure
// before the training finished is restarted while the budget lasts; a
// clean exit, a failure after the finish and a failure during a stop are
// not; every failure counts as a lost worker.
func TestSupervision(t *testing.T) {
	type exit struct{ failed, finished, restart bool }
	for _, tc := range []struct {
		name            string
		budget          int
		stop            bool
		exits           []exit
		lost, restarted int
	}{
		{"clean exits", 2, false, []exit{{false, false, false}, {false, true, false}}, 0, 0},
		{"no budget", 0, false, []exit{{true, false, false}}, 1, 0},
		{"budget of one", 1, false, []exit{{true, false, true}, {true, false, false}}, 2, 1},
		{"after the finish", 3, false, []exit{{true, true, false}}, 1, 0},
		{"during a stop", 3, true, []exit{{true, false, false}}, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := supervision{budget: tc.budget, stopping: tc.stop}
			for i, e := range tc.exits {
				if got := s.exited(e.failed, e.finished); got != e.restart {
					t.Errorf("exit %d (failed %v, finished %v): restart %v, want %v", i, e.failed, e.finished, got, e.restart)
				}
			}
			if s.lost != tc.lost || s.restarted != tc.restarted {
				t.Errorf("lost %d restarted %d, want %d and %d", s.lost, s.restarted, tc.lost, tc.restarted)
			}
		})
	}
}

// TestLauncherSurvivesAKilledWorker kills one of three local workers in
// the middle of a run: without restarts the two others finish the
// training and the launch exits 0, the loss reported as a warning; with
// --max-restarts 1 a new worker takes the dead one's place.
func TestLauncherSurvivesAKilledWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-worker job; skipped with -short")
	}
	for _, tc := range []struct {
		name    string
		extra   []string
		wantLog string
	}{
		// Two workers may go on alone: the job finishes without the third.
		{"no restart", []string{"--min-workers", "2"}, "a worker was lost; the others finished the training"},
		// Three are needed: the job waits for the replacement.
		{"one restart", []string{"--max-restarts", "1"}, "restarting a worker that died"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			args := append(tiny(out, 400, "--workers", "3"), tc.extra...)
			cmd := exec.CommandContext(ctx, exe, args...)
			var log strings.Builder
			cmd.Stdout, cmd.Stderr = &log, &log
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			victim := waitForWorker(t, ctx, cmd.Process.Pid, out)
			if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
				t.Fatalf("kill worker %d: %v", victim, err)
			}
			err = cmd.Wait()
			if err != nil {
				t.Fatalf("the launch failed after a worker was killed: %v\n%s", err, log.String())
			}
			if !strings.Contains(log.String(), tc.wantLog) {
				t.Errorf("the launch's log lacks %q:\n%s", tc.wantLog, log.String())
			}
			if l := losses(t, out); len(l) == 0 || l[399] == 0 {
				t.Errorf("the last step was not trained: %d steps logged", len(l))
			}
		})
	}
}

// waitForWorker waits until the job at out has trained a few steps and
// returns the pid of one of the launcher's worker processes.
func waitForWorker(t *testing.T, ctx context.Context, launcher int, out string) int {
	t.Helper()
	for ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		b, err := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
		if err != nil || strings.Count(string(b), "\n") < 20 {
			continue
		}
		// A process's children are listed by the thread that started
		// them: read every thread's list.
		tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(launcher), "task", "*", "children"))
		if len(tasks) == 0 {
			t.Skip("the launcher's children cannot be listed here: this test needs Linux's /proc")
		}
		var pids []string
		for _, f := range tasks {
			kids, _ := os.ReadFile(f)
			pids = append(pids, strings.Fields(string(kids))...)
		}
		if len(pids) < 3 {
			continue
		}
		pid, err := strconv.Atoi(pids[len(pids)-1])
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
	t.Fatal("the job did not reach step 20")
	return 0
}

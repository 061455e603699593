package main

import (
	"context"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infonce/infonce/internal/testcluster"
	"github.com/infonce/infonce/rundir"
)

// TestMain lets the test binary stand in for the infonce binary: the
// workers that `train --workers N` starts are os.Executable() with
// INFONCE_TEST_AS_BINARY set.
func TestMain(m *testing.M) {
	if os.Getenv("INFONCE_TEST_AS_BINARY") == "1" && !fuzzWorker(os.Args[1:]) {
		ctx, stop := signalContext()
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Setenv("INFONCE_TEST_AS_BINARY", "1")
	os.Exit(m.Run())
}

// fuzzWorker reports whether the test binary was started by go test's
// fuzzing engine as one of its workers, which must run the tests, not
// the binary.
func fuzzWorker(args []string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, "-test.fuzzworker") {
			return true
		}
	}
	return false
}

// tiny is a model and run small enough for multi-process tests.
func tiny(out string, steps int, extra ...string) []string {
	return append([]string{"train", "--no-eval", "--steps", itoa(steps), "--batch", "64", "--hidden", "32",
		"--text-hidden", "16", "--dim", "8", "--log-every", "1", "--out", out, "--checksum-every", "5"}, extra...)
}

func itoa(n int) string { return strconv.Itoa(n) }

// binary runs the test binary as infonce and returns its combined output.
func binary(t *testing.T, ctx context.Context, args ...string) (string, error) {
	t.Helper()
	p := startBinary(t, args...)
	err := p.WaitContext(ctx)
	return p.Output(), err
}

// startBinary starts the test binary as infonce, in a process group the
// test kills when it ends; its output goes to a file of its own.
func startBinary(t *testing.T, args ...string) *testcluster.Proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return testcluster.Start(t, testcluster.ProcOptions{Binary: exe, Dir: t.TempDir(), Name: "infonce", Args: args})
}

// losses reads metrics.jsonl: the loss of every step, the last line of a
// step winning (a step that ran again after a failure logs twice).
func losses(t *testing.T, dir string) map[int64]float64 {
	t.Helper()
	ms, _, err := rundir.ReadMetrics(dir)
	if err != nil {
		t.Fatal(err)
	}
	return rundir.Losses(ms)
}

func summarySHA(t *testing.T, dir string) string {
	t.Helper()
	s, err := rundir.ReadSummary(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s.ParamSHA256
}

// TestWholeRunOneVersusFourWorkers: 50 steps with one worker (in process)
// and with four worker processes, same seed and global batch, give
// per-step losses within 1e-4 relative; and the same four-worker run twice
// gives bit-identical parameters.
func TestWholeRunOneVersusFourWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several worker processes; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	one, four, again := t.TempDir(), t.TempDir(), t.TempDir()
	if out, err := binary(t, ctx, tiny(one, 50)...); err != nil {
		t.Fatalf("--workers 1: %v\n%s", err, out)
	}
	if out, err := binary(t, ctx, tiny(four, 50, "--workers", "4")...); err != nil {
		t.Fatalf("--workers 4: %v\n%s", err, out)
	}
	a, b := losses(t, one), losses(t, four)
	if len(a) != 50 || len(b) != 50 {
		t.Fatalf("%d and %d logged steps, want 50", len(a), len(b))
	}
	var worst float64
	for s, la := range a {
		worst = math.Max(worst, math.Abs(b[s]-la)/math.Abs(la))
	}
	if worst > 1e-4 {
		t.Fatalf("per-step losses differ by %.2g relative between 1 and 4 workers", worst)
	}
	t.Logf("1 vs 4 workers over 50 steps: worst relative loss difference %.2g", worst)
	if out, err := binary(t, ctx, tiny(again, 50, "--workers", "4")...); err != nil {
		t.Fatalf("--workers 4 again: %v\n%s", err, out)
	}
	if x, y := summarySHA(t, four), summarySHA(t, again); x != y || x == "" {
		t.Fatalf("two 4-worker runs gave parameters %s and %s, want bit-identical", x, y)
	}
}

// TestResumeAfterSIGTERM stops a run with SIGTERM, resumes it, and gets the
// per-step losses and the final parameters of the uninterrupted run, bit
// for bit with the same number of workers.
func TestResumeAfterSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several worker processes; skipped with -short")
	}
	// Enough steps that the stop arrives before the end: two workers of
	// the tiny model run hundreds of steps a second here.
	const steps = 400
	for _, workers := range []string{"1", "2"} {
		t.Run("workers="+workers, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			whole, parted := t.TempDir(), t.TempDir()
			if out, err := binary(t, ctx, tiny(whole, steps, "--workers", workers)...); err != nil {
				t.Fatalf("uninterrupted: %v\n%s", err, out)
			}
			p := startBinary(t, tiny(parted, steps, "--workers", workers)...)
			// Stop once some steps are logged.
			deadline := time.Now().Add(time.Minute)
			for time.Now().Before(deadline) {
				if len(testcluster.ReadMetrics(t, parted)) >= 8 {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			_ = p.Signal(syscall.SIGTERM)
			if err := p.WaitContext(ctx); err != nil {
				t.Fatalf("the stopped run exited with %v\n%s", err, p.Output())
			}
			stopped := len(losses(t, parted))
			if stopped >= steps {
				t.Skipf("the run finished (%d steps) before the stop arrived; nothing to resume", stopped)
			}
			if o, err := binary(t, ctx, append(tiny(parted, steps, "--workers", workers), "--resume", "latest")...); err != nil {
				t.Fatalf("resume: %v\n%s", err, o)
			}
			a, b := losses(t, whole), losses(t, parted)
			for s, la := range a {
				if b[s] != la {
					t.Fatalf("step %d: loss %v after stop at %d and resume, %v uninterrupted", s, b[s], stopped, la)
				}
			}
			if x, y := summarySHA(t, whole), summarySHA(t, parted); x != y {
				t.Fatalf("final parameters differ after resume: %s vs %s", y, x)
			}
			t.Logf("stopped after %d logged steps, resumed, identical to the uninterrupted run", stopped)
		})
	}
}

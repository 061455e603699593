package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/rundir"
)

// trainNoOut are the flags of small() without --out.
func trainNoOut(extra ...string) []string {
	return append([]string{"train", "--no-eval", "--steps", "4", "--batch", "32", "--hidden", "32", "--text-hidden", "16", "--dim", "8", "--log-every", "1"}, extra...)
}

// runIDOf returns the run id of run's summary and checks that every
// checkpoint of run names the same id.
func runIDOf(t *testing.T, run string) string {
	t.Helper()
	sum, err := rundir.ReadSummary(run)
	if err != nil {
		t.Fatal(err)
	}
	if sum.RunID == "" {
		t.Fatalf("%s: summary.json names no run id", run)
	}
	dirs, err := rundir.Checkpoints(run)
	if err != nil || len(dirs) == 0 {
		t.Fatalf("%s: checkpoints %v, %v", run, dirs, err)
	}
	for _, d := range dirs {
		m, err := checkpoint.Inspect(d)
		if err != nil {
			t.Fatal(err)
		}
		if m.RunID != sum.RunID {
			t.Errorf("%s: checkpoint of run %q, summary of run %q", d, m.RunID, sum.RunID)
		}
	}
	return sum.RunID
}

// TestRunsOwnTheirData: the same command run twice writes two run
// directories (runs/latest pointing at the newer) and destroys nothing; an
// --out that holds another run's checkpoints is refused unless --resume or
// --overwrite is given; a resumed run keeps its id.
func TestRunsOwnTheirData(t *testing.T) {
	t.Chdir(t.TempDir())
	train := func(args ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr)
		return code, stderr.String()
	}
	if code, errs := train(trainNoOut()...); code != 0 {
		t.Fatalf("first train exited %d: %s", code, errs)
	}
	first, err := filepath.EvalSymlinks(runsLatest)
	if err != nil {
		t.Fatal(err)
	}
	idA := runIDOf(t, first)
	if code, errs := train(trainNoOut()...); code != 0 {
		t.Fatalf("second train exited %d: %s", code, errs)
	}
	second, err := filepath.EvalSymlinks(runsLatest)
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatalf("both runs wrote into %s", first)
	}
	idB := runIDOf(t, second)
	if idA == idB {
		t.Errorf("both runs are run %s", idA)
	}
	if got := runIDOf(t, first); got != idA {
		t.Errorf("the first run's files now name run %s, want %s", got, idA)
	}
	for _, dir := range []string{first, second} {
		if !strings.HasPrefix(dir, runsRoot+string(filepath.Separator)) {
			t.Errorf("run directory %s is not under %s", dir, runsRoot)
		}
	}

	// An explicit --out of another run is refused, its checkpoints kept.
	before, _ := rundir.Checkpoints(first)
	code, errs := train(trainNoOut("--out", first)...)
	if code == 0 || !strings.Contains(errs, "--overwrite") || !strings.Contains(errs, idA) {
		t.Fatalf("train --out of another run exited %d: %s", code, errs)
	}
	if after, _ := rundir.Checkpoints(first); len(after) != len(before) || runIDOf(t, first) != idA {
		t.Fatalf("a refused run changed %s: checkpoints %v, before %v", first, after, before)
	}

	// --resume latest continues the run runs/latest points at, as that run.
	if code, errs := train(trainNoOut("--steps", "6", "--resume", "latest")...); code != 0 {
		t.Fatalf("train --resume latest exited %d: %s", code, errs)
	}
	if got := runIDOf(t, second); got != idB {
		t.Errorf("the resumed run is run %s, want %s", got, idB)
	}
	if now, _ := filepath.EvalSymlinks(runsLatest); now != second {
		t.Errorf("runs/latest points at %s after a resume, want %s", now, second)
	}
	if sum, _ := rundir.ReadSummary(second); sum == nil || sum.Steps != 6 {
		t.Errorf("the resumed run's summary: %+v", sum)
	}

	// --resume auto without an earlier run starts one.
	t.Run("auto", func(t *testing.T) {
		t.Chdir(t.TempDir())
		if code, errs := train(trainNoOut("--resume", "auto")...); code != 0 {
			t.Fatalf("train --resume auto without a run exited %d: %s", code, errs)
		}
		if _, err := filepath.EvalSymlinks(runsLatest); err != nil {
			t.Errorf("no run after --resume auto: %v", err)
		}
	})

	// --overwrite clears the other run's checkpoints and starts anew.
	if code, errs := train(trainNoOut("--out", first, "--overwrite")...); code != 0 {
		t.Fatalf("train --overwrite exited %d: %s", code, errs)
	}
	if got := runIDOf(t, first); got == idA {
		t.Errorf("after --overwrite %s still holds run %s", first, idA)
	}
	// --job-id names the run.
	if code, errs := train(trainNoOut("--job-id", "nightly-7")...); code != 0 {
		t.Fatalf("train --job-id exited %d: %s", code, errs)
	}
	third, _ := filepath.EvalSymlinks(runsLatest)
	if got := runIDOf(t, third); got != "nightly-7" || !strings.HasSuffix(third, "-nightly-7") {
		t.Errorf("train --job-id nightly-7 wrote run %s into %s", got, third)
	}
	if _, err := os.Stat(filepath.Join(first, "summary.json")); err != nil {
		t.Error(err)
	}
}

// TestResumeWithChangedSettings: a resume that changes the learning rate or
// the length of the run says so (a warning naming the old and new values,
// changed_settings in summary.json); a --steps below the checkpoint's step
// is refused, naming both.
func TestResumeWithChangedSettings(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), append([]string{"train", "--no-eval"}, small(out)...), &stdout, &stderr); code != 0 {
		t.Fatalf("train exited %d: %s", code, stderr.String())
	}
	stderr.Reset()
	code := run(context.Background(), append([]string{"train", "--no-eval"}, small(out, "--steps", "2", "--resume", "latest")...), &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "--steps 2 is below the 4 steps") {
		t.Fatalf("resume with --steps below the checkpoint exited %d: %s", code, stderr.String())
	}
	stderr.Reset()
	code = run(context.Background(), append([]string{"train", "--no-eval"}, small(out, "--steps", "6", "--lr", "0.002", "--resume", "latest")...), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("resume exited %d: %s", code, stderr.String())
	}
	for _, want := range []string{`setting=lr old=0.001 new=0.002`, `setting=steps old=4 new=6`} {
		if !strings.Contains(stderr.String(), "WARN") || !strings.Contains(stderr.String(), want) {
			t.Errorf("no warning %q in:\n%s", want, stderr.String())
		}
	}
	sum, err := rundir.ReadSummary(out)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range sum.ChangedSettings {
		got[c.Setting] = c.Old + "→" + c.New
	}
	if len(got) != 2 || got["lr"] != "0.001→0.002" || got["steps"] != "4→6" {
		t.Errorf("changed_settings %+v, want lr and steps", sum.ChangedSettings)
	}
}

// TestCoordinatorRefusesAnotherRunsOut: `infonce coordinator` without
// --resume does not start over another run's checkpoints (which its rank 0
// would otherwise save beside, and prune), and says how to go on.
func TestCoordinatorRefusesAnotherRunsOut(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), append([]string{"train", "--no-eval"}, small(out)...), &stdout, &stderr); code != 0 {
		t.Fatalf("train exited %d: %s", code, stderr.String())
	}
	before, _ := rundir.Checkpoints(out)
	stderr.Reset()
	code := run(context.Background(), append([]string{"coordinator", "--join-timeout", "1s"}, small(out)...), &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "--overwrite") || !strings.Contains(stderr.String(), "--resume") {
		t.Fatalf("coordinator over another run's --out exited %d: %s", code, stderr.String())
	}
	if after, _ := rundir.Checkpoints(out); len(after) != len(before) {
		t.Errorf("checkpoints %v after the refusal, before %v", after, before)
	}
}

// TestNegativesFlagsRecordedAndResumed: --hard-negatives and --debias go
// into the checkpoint's configuration; a resume with the same flags goes
// on, one that drops them is refused as another run.
func TestNegativesFlagsRecordedAndResumed(t *testing.T) {
	out := t.TempDir()
	flags := []string{"--hard-negatives", "0.5", "--debias", "0.1"}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), append([]string{"train", "--no-eval"}, small(out, flags...)...), &stdout, &stderr); code != 0 {
		t.Fatalf("train exited %d: %s", code, stderr.String())
	}
	dirs, _ := rundir.Checkpoints(out)
	if len(dirs) == 0 {
		t.Fatal("no checkpoint")
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"checkpoint", "inspect", dirs[len(dirs)-1]}, &stdout, &stderr); code != 0 {
		t.Fatalf("inspect exited %d: %s", code, stderr.String())
	}
	for _, want := range []string{`hard_negatives`, `debias`} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the checkpoint's configuration lacks %s:\n%s", want, stdout.String())
		}
	}
	stderr.Reset()
	code := run(context.Background(), append([]string{"train", "--no-eval"}, small(out, "--steps", "6", "--resume", "latest")...), &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "hard_negatives=0.5") {
		t.Errorf("resume without the flags exited %d: %s", code, stderr.String())
	}
	stderr.Reset()
	code = run(context.Background(), append([]string{"train", "--no-eval"}, small(out, append(flags, "--steps", "6", "--resume", "latest")...)...), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("resume with the same flags exited %d: %s", code, stderr.String())
	}
}

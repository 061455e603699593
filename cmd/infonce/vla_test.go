package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/infonce/infonce/observe"
	"github.com/infonce/infonce/rundir"
)

// TestVLAEndToEnd generates a small procedural benchmark, trains the
// tri-modal objective on it with 2 workers, and requires the retrieval of
// action chunks from (image, instruction) on the held-out validation
// episodes to be clearly above chance: R@5 at least twice its chance level
// 5/n, n the validation steps scored (about 1/40 here).
func TestVLAEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a data set and trains 2 workers; skipped with -short")
	}
	dir := t.TempDir()
	trainSpec, valSpec := synthVLA(t, dir, "--episodes", "120", "--size", "32", "--seed", "3")
	out := filepath.Join(dir, "run")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	log, err := binary(t, ctx, "train", "--objective", "tri", "--workers", "2", "--data", trainSpec, "--val-data", valSpec,
		"--image-size", "16", "--batch", "64", "--steps", "200", "--hidden", "128", "--action-hidden", "64", "--out", out)
	if err != nil {
		t.Fatalf("train: %v\n%s", err, log)
	}
	s, err := rundir.ReadSummary(out)
	if err != nil {
		t.Fatal(err)
	}
	if s.Workers != 2 || s.ActionRecallAt5 == nil || s.ActionChanceAt5 == nil {
		t.Fatalf("summary of %d workers without action retrieval: %+v", s.Workers, s.Evaluation)
	}
	t.Logf("action R@5 %.3f (chance %.3f), R@1 %.3f, median rank %.0f", *s.ActionRecallAt5, *s.ActionChanceAt5, *s.ActionRecallAt1, *s.ActionMedianRank)
	if *s.ActionRecallAt5 < 2**s.ActionChanceAt5 {
		t.Errorf("action R@5 %.3f, want at least twice chance %.3f", *s.ActionRecallAt5, *s.ActionChanceAt5)
	}
	// Task recognition from synth-vla's tasks.json: nine families.
	if s.TaskZeroShotTop1 == nil || s.TaskProbeAccuracy == nil {
		t.Fatalf("summary without task recognition: %+v", s.Evaluation)
	}
	t.Logf("task family: zero-shot %.3f, probe %.3f (chance 1/9)", *s.TaskZeroShotTop1, *s.TaskProbeAccuracy)
	for name, v := range map[string]float64{"task_zero_shot_top1": *s.TaskZeroShotTop1, "task_probe_accuracy": *s.TaskProbeAccuracy} {
		if !(v >= 0 && v <= 1) {
			t.Errorf("%s %v outside [0, 1]", name, v)
		}
	}
	// The plots' data, and the report that draws it.
	v, err := rundir.ReadVLAEval(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.PCA.Families) != 9 || len(v.PCA.X) == 0 || len(v.RecallAtK.K) == 0 {
		t.Fatalf("vla_eval.json: %d families, %d points, %d k", len(v.PCA.Families), len(v.PCA.X), len(v.RecallAtK.K))
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"report", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("report exited %d: %s%s", code, stdout.String(), stderr.String())
	}
	for _, p := range []string{observe.RecallCurvesPlot, observe.PCAPlot} {
		if st, err := os.Stat(filepath.Join(out, "report", p)); err != nil || st.Size() == 0 {
			t.Errorf("report plot %s: %v", p, err)
		}
	}
}

// synthVLA writes a procedural VLA data set with synth-vla's flags args
// into dir and returns the specs of its training shards and of its one
// validation shard.
func synthVLA(t *testing.T, dir string, args ...string) (trainSpec, valSpec string) {
	t.Helper()
	if code, _, stderr := runDataCmd(t, append(append([]string{"synth-vla", "--out", dir}, args...), "--quiet")...); code != 0 {
		t.Fatalf("synth-vla exited %d: %s", code, stderr)
	}
	train, _ := filepath.Glob(filepath.Join(dir, "train", "*.tar"))
	val, _ := filepath.Glob(filepath.Join(dir, "val", "*.tar"))
	if len(train) == 0 || len(val) != 1 {
		t.Fatalf("shards %v and %v, want train shards and one val shard", train, val)
	}
	return "wds:" + filepath.Join(dir, "train", fmt.Sprintf("shard-{000000..%06d}.tar", len(train)-1)), "wds:" + val[0]
}

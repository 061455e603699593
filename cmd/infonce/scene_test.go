package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infonce/infonce/rundir"
)

// TestSceneNegativesTrain writes a synth-vla set of two variants per
// scene, trains the tri-modal objective on it with --scene-negatives and
// 2 workers, and requires the data of one variant per scene to refuse the
// flag.
func TestSceneNegativesTrain(t *testing.T) {
	if testing.Short() {
		t.Skip("generates two data sets and trains 2 workers; skipped with -short")
	}
	dir := t.TempDir()
	if code, _, stderr := runDataCmd(t, "synth-vla", "--episodes", "24", "--out", dir, "--size", "16", "--seed", "5", "--scene-variants", "2", "--quiet"); code != 0 {
		t.Fatalf("synth-vla exited %d: %s", code, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out := filepath.Join(dir, "run")
	log, err := binary(t, ctx, "train", "--objective", "tri", "--workers", "2", "--scene-negatives", "--max-per-episode", "4",
		"--data", "wds:"+filepath.Join(dir, "train", "shard-000000.tar"), "--val-data", "wds:"+filepath.Join(dir, "val", "shard-000000.tar"),
		"--image-size", "16", "--batch", "32", "--steps", "10", "--hidden", "32", "--action-hidden", "16", "--out", out)
	if err != nil {
		t.Fatalf("train: %v\n%s", err, log)
	}
	s, err := rundir.ReadSummary(out)
	if err != nil {
		t.Fatal(err)
	}
	if s.Workers != 2 || s.Steps != 10 {
		t.Fatalf("summary of %d workers and %d steps, want 2 and 10", s.Workers, s.Steps)
	}
	one := filepath.Join(dir, "one")
	if code, _, stderr := runDataCmd(t, "synth-vla", "--episodes", "6", "--out", one, "--size", "16", "--val-fraction", "0", "--quiet"); code != 0 {
		t.Fatalf("synth-vla exited %d: %s", code, stderr)
	}
	log, err = binary(t, ctx, "train", "--objective", "tri", "--scene-negatives", "--data", "wds:"+filepath.Join(one, "train", "shard-000000.tar"),
		"--image-size", "16", "--batch", "16", "--steps", "2", "--out", filepath.Join(dir, "refused"))
	if err == nil || !strings.Contains(log, "--scene-negatives") || !strings.Contains(log, "scene") {
		t.Fatalf("one variant per scene: %v\n%s\nwant a refusal of --scene-negatives", err, log)
	}
}

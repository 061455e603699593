package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infonce/infonce/rundir"
)

// TestVLAObjectiveCommands trains --objective vla on a tiny synth-vla set
// (the loss falls from its first steps), resumes the run from its
// checkpoint, evaluates the checkpoint (action retrieval from the fused
// (image, instruction) embedding) and inspects it (the fusion head is
// listed with the towers).
func TestVLAObjectiveCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a data set and trains on it; skipped with -short")
	}
	dir := t.TempDir()
	trainSpec, valSpec := synthVLA(t, dir, "--episodes", "24", "--size", "16", "--seed", "5")
	out := filepath.Join(dir, "run")
	args := func(steps string, extra ...string) []string {
		return append([]string{"train", "--objective", "vla", "--data", trainSpec, "--val-data", valSpec,
			"--image-size", "16", "--batch", "32", "--steps", steps, "--hidden", "64", "--text-hidden", "32", "--dim", "16",
			"--action-hidden", "32", "--fusion-hidden", "24", "--lr", "3e-3", "--log-every", "1", "--no-eval", "--out", out}, extra...)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args("40"), &stdout, &stderr); code != 0 {
		t.Fatalf("train exited %d: %s", code, stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), args("60", "--resume", "latest"), &stdout, &stderr); code != 0 {
		t.Fatalf("train --resume exited %d: %s", code, stderr.String())
	}
	ms, _, err := rundir.ReadMetrics(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 60 {
		t.Fatalf("%d metric lines, want 60", len(ms))
	}
	mean := func(from, to int) float64 {
		var s float64
		for _, m := range ms[from:to] {
			s += m.Loss
		}
		return s / float64(to-from)
	}
	first, last := mean(0, 5), mean(len(ms)-5, len(ms))
	t.Logf("loss %.3f over the first 5 steps, %.3f over the last 5 (chance ln 32 = %.3f)", first, last, math.Log(32))
	if !(last < 0.85*first) {
		t.Errorf("loss fell from %.3f to %.3f, want below 0.85 × the first", first, last)
	}

	stdout.Reset()
	if code := run(context.Background(), []string{"eval", "--json", "--checkpoint", filepath.Join(out, "checkpoints")}, &stdout, &stderr); code != 0 {
		t.Fatalf("eval exited %d: %s", code, stderr.String())
	}
	var ev map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &ev); err != nil {
		t.Fatalf("eval output %q: %v", stdout.String(), err)
	}
	for _, k := range []string{"action_recall_at_5", "action_chance_at_5", "action_median_rank"} {
		if _, ok := ev[k].(float64); !ok {
			t.Errorf("eval output has no %s: %s", k, stdout.String())
		}
	}
	dirs, _ := rundir.Checkpoints(out)
	if len(dirs) == 0 {
		t.Fatal("no checkpoints")
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"checkpoint", "inspect", dirs[0]}, &stdout, &stderr); code != 0 {
		t.Fatalf("inspect exited %d: %s", code, stderr.String())
	}
	for _, want := range []string{`"modality": "fusion"`, `"name": "fusion.fc1.weight"`, `"fusion_hidden": 24`, `"step": 60`} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("inspect output lacks %s", want)
		}
	}
}

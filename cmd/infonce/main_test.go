package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/rundir"
)

// small are the flags of a model and run small enough for a test.
func small(out string, extra ...string) []string {
	return append([]string{"--steps", "4", "--batch", "32", "--hidden", "32", "--text-hidden", "16", "--dim", "8", "--log-every", "1", "--out", out}, extra...)
}

func TestTrainEvalCheckpointCommands(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), append([]string{"train", "--no-eval"}, small(out)...), &stdout, &stderr); code != 0 {
		t.Fatalf("train exited %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "step 4/4") {
		t.Errorf("no progress line in %q", stdout.String())
	}
	sum, err := rundir.ReadSummary(out)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Steps != 4 || sum.Workers != 1 {
		t.Errorf("summary %+v", sum)
	}

	dirs, _ := rundir.Checkpoints(out)
	if len(dirs) != 1 {
		t.Fatalf("checkpoints %v, want one", dirs)
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"checkpoint", "verify", dirs[0]}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "good") {
		t.Fatalf("verify exited %d: %s %s", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"checkpoint", "inspect", dirs[0]}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), `"step": 4`) {
		t.Fatalf("inspect exited %d: %s %s", code, stdout.String(), stderr.String())
	}
	// inspect rebuilds the towers from the model configuration the
	// manifest records.
	for _, want := range []string{`"modality": "image"`, `"kind": "mlp"`, `"kind": "bow"`, `"name": "image.fc0.weight"`, `"name": "text.proj.bias"`} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("inspect output lacks %s", want)
		}
	}
	// A run's checkpoints folder and the run directory mean its newest
	// checkpoint, as eval --checkpoint takes them.
	for _, p := range []string{filepath.Join(out, "checkpoints"), out} {
		stdout.Reset()
		if code := run(context.Background(), []string{"checkpoint", "verify", p}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "good") {
			t.Fatalf("verify %s exited %d: %s %s", p, code, stdout.String(), stderr.String())
		}
	}
	// A flipped byte in the parameters is reported.
	blob := filepath.Join(dirs[0], "params.zst")
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"checkpoint", "verify", dirs[0]}, &stdout, &stderr); code == 0 || !strings.Contains(stdout.String(), "params.zst") {
		t.Fatalf("verify of a corrupt checkpoint exited %d: %s", code, stdout.String())
	}
}

func TestEvalCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("evaluates on all of MNIST; skipped with -short")
	}
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), append([]string{"train", "--no-eval"}, small(out)...), &stdout, &stderr); code != 0 {
		t.Fatalf("train exited %d: %s", code, stderr.String())
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"eval", "--json", "--checkpoint", filepath.Join(out, "checkpoints")}, &stdout, &stderr); code != 0 {
		t.Fatalf("eval exited %d: %s", code, stderr.String())
	}
	var ev map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &ev); err != nil {
		t.Fatalf("eval output %q: %v", stdout.String(), err)
	}
	if top1, ok := ev["zero_shot_top1"].(float64); !ok || top1 <= 0 || top1 > 1 {
		t.Errorf("zero_shot_top1 = %v", ev["zero_shot_top1"])
	}
}

func TestBadInputIsAClearError(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"train", "--objective", "byol"}, 2, "--objective"},
		{[]string{"train", "--batch", "70000", "--out", "OUT"}, 1, "--batch"},
		{[]string{"train", "--objective", "moco", "--moco-queue", "100"}, 2, "--moco-queue"},
		{[]string{"train", "--micro-batch", "-1"}, 2, "--micro-batch"},
		{[]string{"train", "--data", "idx:/nonexistent"}, 1, "/nonexistent"},
		{[]string{"train", "--frobnicate"}, 2, "frobnicate"},
		{[]string{"train", "--objective", "siglip", "--hard-negatives", "1"}, 2, "--hard-negatives"},
		{[]string{"train", "--debias", "1"}, 2, "--debias 1"},
		{[]string{"fly"}, 2, "unknown command"},
		{[]string{"checkpoint", "verify", "/nonexistent"}, 1, "/nonexistent"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for i, a := range tc.args {
				if a == "OUT" {
					tc.args[i] = t.TempDir()
				}
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String()+stdout.String(), tc.want) {
				t.Fatalf("exit %d (want %d), output %q does not name %q", code, tc.code, stderr.String(), tc.want)
			}
		})
	}
}

func TestEnvironmentSetsFlags(t *testing.T) {
	out := t.TempDir()
	t.Setenv("INFONCE_STEPS", "2")
	t.Setenv("INFONCE_OUT", out)
	var stdout, stderr bytes.Buffer
	args := []string{"train", "--no-eval", "--batch", "32", "--hidden", "32", "--text-hidden", "16", "--dim", "8"}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("train exited %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "step 2/2") {
		t.Fatalf("INFONCE_STEPS was not applied: %q", stdout.String())
	}
	if _, err := os.Stat(rundir.SummaryPath(out)); err != nil {
		t.Fatalf("INFONCE_OUT was not applied: %v", err)
	}
	t.Setenv("INFONCE_BATCH", "many")
	if code := run(context.Background(), []string{"train"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "INFONCE_BATCH") {
		t.Fatalf("a bad INFONCE_BATCH gave exit %d: %q", code, stderr.String())
	}
}

// TestTokenizerTrainCommand trains a BPE tokenizer on MNIST's captions and
// trains the transformer text tower with it: the run's checkpoint holds
// the same tokenizer.
func TestTokenizerTrainCommand(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "bpe.bin")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"tokenizer", "train", "--data", "mnist", "--vocab", "300", "--out", tok}, &stdout, &stderr); code != 0 {
		t.Fatalf("tokenizer train exited %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "ids") {
		t.Errorf("output %q", stdout.String())
	}
	want, err := os.ReadFile(tok)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "run")
	args := []string{"train", "--no-eval", "--steps", "2", "--batch", "32", "--hidden", "16", "--dim", "8", "--text-tower", "transformer",
		"--text-width", "16", "--text-depth", "1", "--text-heads", "2", "--context-length", "16", "--tokenizer", tok, "--out", out}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("train exited %d: %s", code, stderr.String())
	}
	c, err := checkpoint.Open(context.Background(), filepath.Join(out, "checkpoints"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Blob("tokenizer")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the checkpoint's tokenizer differs from --tokenizer's (%v)", err)
	}
}

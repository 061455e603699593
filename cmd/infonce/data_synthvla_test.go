package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSynthVLACommand(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"data", "synth-vla", "--episodes", "5", "--out", dir, "--size", "32", "--val-fraction", "0.4", "--quiet"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"train      3 episodes", "val        2 episodes", "wds:" + filepath.Join(dir, "train", "shard-000000.tar"), "red star"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	var info struct {
		Splits map[string]struct{ Episodes, Steps int }
	}
	b, err := os.ReadFile(filepath.Join(dir, "info.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &info); err != nil || info.Splits["train"].Episodes != 3 || info.Splits["val"].Steps < 20 {
		t.Fatalf("info.json %s: %v", b, err)
	}
	// No validation split with --val-fraction 0.
	dir = t.TempDir()
	out.Reset()
	if code := run(context.Background(), []string{"data", "synth-vla", "--episodes", "2", "--out", dir, "--size", "16", "--val-fraction", "0", "--format", "rlds", "--quiet"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "val")); !os.IsNotExist(err) || !strings.Contains(out.String(), "rlds:") {
		t.Fatalf("val split written with --val-fraction 0 (%v):\n%s", err, out.String())
	}
	for _, args := range [][]string{
		{"data", "synth-vla", "--out", dir},
		{"data", "synth-vla", "--episodes", "3"},
		{"data", "synth-vla", "--episodes", "3", "--out", t.TempDir(), "--format", "csv"},
	} {
		if code := run(context.Background(), args, &out, &errb); code == 0 {
			t.Errorf("%v: exit 0", args)
		}
	}
}

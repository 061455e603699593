//go:build !faultinject

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infonce/infonce/worker"
)

// TestFaultVariablesIgnoredWithoutTag: a binary built without the
// faultinject tag (this test binary, standing in for infonce) ignores the
// fault variables. Each run would inject a NaN into its first steps and
// abort on the first one (--max-bad-steps 1) if it read them; it must
// train every step, skip none, and write no sample log.
func TestFaultVariablesIgnoredWithoutTag(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, workers := range []string{"1", "2"} {
		t.Run("workers="+workers, func(t *testing.T) {
			out, samples := t.TempDir(), filepath.Join(t.TempDir(), "samples.jsonl")
			t.Setenv(worker.EnvFaultNaNSteps, "0,1,2")
			t.Setenv(worker.EnvSampleLog, samples)
			log, err := binary(t, ctx, tiny(out, 6, "--workers", workers, "--max-bad-steps", "1")...)
			if err != nil {
				t.Fatalf("train with %s set: %v\n%s", worker.EnvFaultNaNSteps, err, log)
			}
			if strings.Contains(log, "skipped") || strings.Contains(log, "non-finite") {
				t.Fatalf("a step was skipped:\n%s", log)
			}
			if n := len(losses(t, out)); n != 6 {
				t.Fatalf("%d steps logged, want 6\n%s", n, log)
			}
			if _, err := os.Stat(samples); !os.IsNotExist(err) {
				t.Fatalf("%s was written (stat: %v)", samples, err)
			}
		})
	}
}

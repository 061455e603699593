//go:build faultinject

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/infonce/infonce/worker"
)

// TestFaultVariablesReadWithTag: a binary built with the faultinject tag
// reads the fault variables: a NaN injected into the first step aborts the
// run under --max-bad-steps 1.
func TestFaultVariablesReadWithTag(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Setenv(worker.EnvFaultNaNSteps, "0,1,2")
	log, err := binary(t, ctx, tiny(t.TempDir(), 6, "--max-bad-steps", "1")...)
	if err == nil || !strings.Contains(log, "non-finite") {
		t.Fatalf("train with %s set: err = %v, want a non-finite abort\n%s", worker.EnvFaultNaNSteps, err, log)
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestChaos runs `infonce bench chaos --short`: a job of four worker
// processes on loopback (one of them in a network namespace when the test
// runs as root) under a seeded schedule of 20 faults (kill -9 of a worker
// and of rank 0, SIGSTOP/SIGCONT, a kill and restart of the coordinator, a
// partition, a full disk during saves; the kinds this machine cannot inject
// are skipped with the reason in the report). The job must finish with
// every global batch of every epoch applied to the parameters exactly once
// (package lineage, over the workers' sample logs) and a final loss within
// 1 % of an undisturbed run of the same seed.
func TestChaos(t *testing.T) {
	needSetup(t)
	// The run's directory stays for a look when the test fails.
	dir, err := os.MkdirTemp("", "infonce-e2e-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the run, its logs and chaos.json stay in %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, binary, "bench", "chaos", "--short", "--seed", "1", "--out", dir)
	cmd.Env = append(os.Environ(), procEnv...)
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	report := string(out)
	if i := strings.Index(report, "chaos: "); i > 0 {
		report = report[i:] // the table, after the harness's log lines
	}
	t.Logf("bench chaos --short (%v):\n%s", took.Round(time.Second), report)
	if err != nil {
		t.Fatalf("bench chaos: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "chaos.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Faults []struct {
			Kind     string `json:"kind"`
			Recovery int64  `json:"recovery_ns"`
		} `json:"faults"`
		Problems []string                            `json:"problems"`
		Finished bool                                `json:"finished"`
		Lost     int                                 `json:"samples_lost"`
		Repeated int                                 `json:"samples_repeated"`
		Diff     float64                             `json:"final_loss_relative_difference"`
		Config   struct{ Skipped map[string]string } `json:"config"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Faults) < 20 || len(rep.Problems) > 0 || !rep.Finished || rep.Lost != 0 || rep.Repeated != 0 || rep.Diff > 0.01 {
		t.Errorf("chaos.json: %d faults, finished %v, lost %d, repeated %d, final loss %.3g%% off, problems %q",
			len(rep.Faults), rep.Finished, rep.Lost, rep.Repeated, 100*rep.Diff, rep.Problems)
	}
	kinds := map[string]bool{}
	for _, f := range rep.Faults {
		kinds[f.Kind] = true
	}
	for _, k := range []string{"kill", "kill-rank0", "sigstop", "coordinator", "partition", "disk-full"} {
		if why, skipped := rep.Config.Skipped[k]; skipped {
			t.Logf("fault kind %s skipped: %s", k, why)
			continue
		}
		if !kinds[k] {
			t.Errorf("no %s fault in the schedule", k)
		}
	}
}

package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/infonce/infonce/coordinator"
)

// TestMemberFaultsAsOptions runs two workers in this process against an
// in-process coordinator, with NaN gradients injected on one of them
// through MemberOptions.Faults (no environment variable): every rank skips
// the injected steps alike, completes the others once, and the run ends
// with a summary on rank 0. The sample logs, also given as an option, are
// where the skips show.
func TestMemberFaultsAsOptions(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a coordinator and two workers; skipped with -short")
	}
	const steps = 8
	out, logs := t.TempDir(), t.TempDir()
	cfg := smallConfig(t, CLIP)
	cfg.Batch, cfg.ImageHidden, cfg.TextHidden, cfg.Dim = 32, []int{16}, 16, 8
	cfg.Steps, cfg.Out, cfg.ChecksumEvery = steps, out, 2
	spec, err := EncodeRunSpec(RunSpec{Config: cfg, MaxBadSteps: 3})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	cc := coordinator.DefaultLocalConfig()
	cc.JobID, cc.MinWorkers, cc.MaxWorkers = "faults", 2, 2
	cc.RunConfig, cc.Fingerprint, cc.Logger = spec, cfg.FingerprintFields(), quiet
	cc.DisableGossip, cc.StopGrace = true, 2*time.Second
	srv, err := coordinator.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()

	sums := make([]*Summary, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range sums {
		f := Faults{SampleLog: filepath.Join(logs, fmt.Sprintf("w%d.jsonl", i))}
		if i == 1 {
			f.NaNSteps = []int64{2, 3}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sums[i], errs[i] = RunMember(ctx, MemberOptions{
				Coordinator: srv.Addr(), Name: fmt.Sprintf("w%d", i), DataBind: "127.0.0.1:0",
				Out: out, Logger: quiet, OpTimeout: 20 * time.Second, NoSharedMemory: true, Faults: f,
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("coordinator: %v", err)
	}
	var finished int
	for _, s := range sums {
		if s != nil {
			finished++
			if s.Steps != steps || s.Workers != 2 {
				t.Errorf("summary: %d steps with %d workers, want %d with 2", s.Steps, s.Workers, steps)
			}
		}
	}
	if finished != 1 {
		t.Fatalf("%d summaries, want rank 0's only", finished)
	}
	for i := range sums {
		events := sampleEvents(t, filepath.Join(logs, fmt.Sprintf("w%d.jsonl", i)))
		for step := int64(0); step < steps; step++ {
			want := "done"
			if step == 2 || step == 3 {
				want = "skipped"
			}
			if got := events[step]; len(got) != 1 || got[0] != want {
				t.Errorf("worker %d, step %d: events %v, want [%s]", i, step, got, want)
			}
		}
	}
}

// sampleEvents reads a sample log: the "done" and "skipped" events of every
// step, in order.
func sampleEvents(t *testing.T, path string) map[int64][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	events := map[int64][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r SampleRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if r.Event != "contribute" {
			events[r.Step] = append(events[r.Step], r.Event)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return events
}

package worker

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
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
	sums, errs, served := runPair(t, "faults", RunSpec{Config: cfg, MaxBadSteps: 3}, func(i int, o *MemberOptions) {
		o.Out = out
		o.Faults = Faults{SampleLog: filepath.Join(logs, fmt.Sprintf("w%d.jsonl", i))}
		if i == 1 {
			o.Faults.NaNSteps = []int64{2, 3}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	if served != nil {
		t.Fatalf("coordinator: %v", served)
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

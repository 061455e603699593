package worker

import (
	"context"
	"slices"
	"testing"

	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/rundir"
)

// checkpointSteps lists the steps of out's checkpoints, lowest first.
func checkpointSteps(t *testing.T, out string) []int64 {
	t.Helper()
	dirs, err := rundir.Checkpoints(out)
	if err != nil {
		t.Fatal(err)
	}
	var steps []int64
	for _, d := range dirs {
		m, err := checkpoint.Inspect(d)
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, m.Step)
	}
	slices.Sort(steps)
	return steps
}

// TestRunLocalCheckpointEvery: the single-process run saves after every
// --checkpoint-every steps, as a distributed run's rank 0 does, and the
// final state at the end.
func TestRunLocalCheckpointEvery(t *testing.T) {
	set := smallMNIST(t, 1024, 100)
	for _, tc := range []struct {
		steps, every int64
		want         []int64
	}{
		{steps: 6, every: 2, want: []int64{2, 4, 6}},
		{steps: 7, every: 3, want: []int64{3, 6, 7}},
		{steps: 5, every: 0, want: []int64{5}},
	} {
		cfg := smallConfig(t, CLIP)
		cfg.Steps, cfg.CheckpointEvery = tc.steps, tc.every
		if _, err := RunLocal(context.Background(), cfg, set, Options{}); err != nil {
			t.Fatal(err)
		}
		if got := checkpointSteps(t, cfg.Out); !slices.Equal(got, tc.want) {
			t.Errorf("--steps %d --checkpoint-every %d: checkpoints at steps %v, want %v", tc.steps, tc.every, got, tc.want)
		}
	}
}

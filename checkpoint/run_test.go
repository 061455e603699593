package checkpoint

import (
	"context"
	"errors"
	"testing"
)

func runManifest(step int64, run string) Manifest {
	m := testManifest(step)
	m.RunID = run
	return m
}

// TestSaveRefusesAnotherRunsRoot: a root that holds one run's checkpoints
// takes no checkpoint of another run, neither under the same step (which
// would be taken for the new run's) nor under another (whose pruning would
// remove the new run's first); Clear empties it under the lock.
func TestSaveRefusesAnotherRunsRoot(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, 2)
	for _, step := range []int64{4, 8} {
		if _, err := s.Save(ctx, runManifest(step, "run-a"), testBlobs(step, 100)); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []int64{8, 2, 12} {
		if _, err := s.Save(ctx, runManifest(step, "run-b"), testBlobs(step, 100)); !errors.Is(err, ErrOtherRun) {
			t.Errorf("run-b saving step %d over run-a's root: %v, want ErrOtherRun", step, err)
		}
	}
	if _, err := s.Save(ctx, runManifest(8, "run-a"), testBlobs(8, 100)); !errors.Is(err, ErrExists) {
		t.Errorf("run-a saving its own step 8 again: %v, want ErrExists", err)
	}
	if dirs, _ := s.List(); len(dirs) != 2 {
		t.Fatalf("run-a's checkpoints after the refusals: %v", dirs)
	}
	if ids, err := s.Runs(); err != nil || len(ids) != 1 || ids[0] != "run-a" {
		t.Errorf("Runs() = %v, %v; want [run-a]", ids, err)
	}
	if n, err := s.Clear(ctx); err != nil || n != 2 {
		t.Fatalf("Clear() = %d, %v; want 2", n, err)
	}
	if _, err := s.Save(ctx, runManifest(2, "run-b"), testBlobs(2, 100)); err != nil {
		t.Errorf("run-b saving into the cleared root: %v", err)
	}
	c, err := s.LoadLatest(ctx)
	if err != nil || c.Manifest.RunID != "run-b" {
		t.Fatalf("LoadLatest after the clear: %v (run %q)", err, c.Manifest.RunID)
	}
}

package rundir

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/infonce/infonce/checkpoint"
)

// The names of a run directory's entries.
const (
	MetricsFile    = "metrics.jsonl"
	SummaryFile    = "summary.json"
	CheckpointsDir = "checkpoints"
)

// MetricsPath is the path of run's metrics.jsonl.
func MetricsPath(run string) string { return filepath.Join(run, MetricsFile) }

// SummaryPath is the path of run's summary.json.
func SummaryPath(run string) string { return filepath.Join(run, SummaryFile) }

// CheckpointDir is the directory under which run keeps its checkpoints.
func CheckpointDir(run string) string { return filepath.Join(run, CheckpointsDir) }

// ErrNoCheckpoint reports a run directory without any checkpoint.
var ErrNoCheckpoint = errors.New("no checkpoint")

// Checkpoints lists the checkpoint directories of run, the highest step
// first. It looks at names only (canonical step-NNNNNNNNNNNN directories);
// a run without a checkpoints directory has none.
func Checkpoints(run string) ([]string, error) {
	dirs, err := (&checkpoint.Store{Root: CheckpointDir(run)}).List()
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", run, err)
	}
	return dirs, nil
}

// LatestCheckpoint is the checkpoint directory of run with the highest
// step, by name (it is not verified: checkpoint.Load does that). It
// returns an error wrapping ErrNoCheckpoint when run has none.
func LatestCheckpoint(run string) (string, error) {
	dirs, err := Checkpoints(run)
	if err != nil {
		return "", err
	}
	if len(dirs) == 0 {
		return "", fmt.Errorf("run %s: %w under %s", run, ErrNoCheckpoint, CheckpointDir(run))
	}
	return dirs[0], nil
}

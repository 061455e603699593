package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/infonce/infonce/rundir"
	"github.com/infonce/infonce/worker"
)

// runsRoot holds the run directories of runs not given an --out, and
// runsLatest points at the newest of them.
const (
	runsRoot   = "runs"
	runsLatest = "runs/latest"
)

// settleRun fixes the run's directory (cfg.Out) and id (cfg.RunID) before
// anything is written:
//
//   - A resumed run keeps the id its checkpoint names. Without --out it
//     continues in the run directory of that checkpoint: --resume latest
//     (or auto) resolves runs/latest to the directory it points at.
//   - A new run takes --job-id as its id when given, or a random one; without
//     --out it writes into a directory of its own, runs/<UTC date-time>-<id>,
//     and runs/latest is pointed at it, so that running the same command
//     twice never touches the first run's files.
//
// A new run whose --out holds another run's checkpoints is refused later, by
// worker.StartFresh, unless --overwrite is given.
//
// The returned publish creates a new run directory and points runs/latest
// at it; the caller calls it once the run is about to start, so that a run
// refused on its flags or data leaves nothing behind.
func settleRun(ctx context.Context, cfg *worker.Config, set map[string]bool, resume, jobID string, now time.Time, log *slog.Logger) (publish func() error, err error) {
	publish = func() error { return nil }
	if !set["out"] {
		switch resume {
		case "":
		case "latest", "auto":
			target, err := filepath.EvalSymlinks(runsLatest)
			switch {
			case err == nil:
				cfg.Out = target
			case resume == "latest":
				return nil, usageError{fmt.Errorf("--resume latest without --out: %s names no run (%v); give the run directory with --out", runsLatest, err)}
			}
		default:
			if dir := runDirOf(resume); dir != "" {
				cfg.Out = dir
			}
		}
	}
	if resume != "" {
		out := cfg.Out
		if !set["out"] && out == worker.DefaultConfig().Out {
			out = "" // auto without an earlier run: nothing to resume
		}
		if out != "" || (resume != "latest" && resume != "auto") {
			c, _, err := loadResume(ctx, resume, out)
			if err != nil {
				return nil, err
			}
			if c != nil {
				cfg.RunID = c.Manifest.RunID
				if cfg.Steps > 0 && cfg.Steps < c.Manifest.Step {
					return nil, usageError{fmt.Errorf("--steps %d is below the %d steps checkpoint %s has trained: a resumed run trains up to --steps in all; give --steps %d or more", cfg.Steps, c.Manifest.Step, c.Dir, c.Manifest.Step)}
				}
			}
		}
	}
	if cfg.RunID == "" {
		cfg.RunID = worker.NewRunID()
		if set["job-id"] {
			cfg.RunID = jobID
		}
	}
	if set["out"] || cfg.Out != worker.DefaultConfig().Out {
		return publish, nil
	}
	out := filepath.Join(runsRoot, now.UTC().Format("20060102T150405Z")+"-"+shortRunID(cfg.RunID))
	cfg.Out = out
	return func() error {
		if err := os.MkdirAll(out, 0o755); err != nil {
			return fmt.Errorf("run directory %s: %w", out, err)
		}
		if err := pointLatest(out); err != nil {
			log.Warn("runs/latest still points at an earlier run", "err", err)
		}
		log.Info("run directory", "run", cfg.RunID, "out", out, "latest", runsLatest)
		return nil
	}, nil
}

// runDirOf is the run directory a checkpoint path lies in (RUN for
// RUN/checkpoints or RUN/checkpoints/step-N), or "" when the path is no
// run's.
func runDirOf(path string) string {
	p := filepath.Clean(path)
	if filepath.Base(p) != rundir.CheckpointsDir {
		p = filepath.Dir(p)
	}
	if filepath.Base(p) != rundir.CheckpointsDir {
		return ""
	}
	return filepath.Dir(p)
}

// safeRunID is a run id that may stand in a file name as it is.
var safeRunID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,16}$`)

// shortRunID is the part of a run id in its directory's name: the id itself
// when it is short and plain, otherwise a digest of it.
func shortRunID(id string) string {
	if safeRunID.MatchString(id) && id[0] != '.' {
		return id
	}
	return fmt.Sprintf("%08x", fnv32(id))
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

// pointLatest points runs/latest at the run directory dir (under runs/):
// a new symbolic link under a temporary name renamed over the old one, so
// that a reader sees the old run or the new one, never no link. A real
// directory named runs/latest (written before runs had directories of
// their own) is left as it is.
func pointLatest(dir string) error {
	if fi, err := os.Lstat(runsLatest); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("%s is a directory, not a link: left as it is", runsLatest)
	}
	base := filepath.Base(dir)
	tmp := filepath.Join(runsRoot, ".latest-"+base)
	_ = os.Remove(tmp)
	if err := os.Symlink(base, tmp); err != nil {
		return fmt.Errorf("link %s: %w", runsLatest, err)
	}
	if err := os.Rename(tmp, runsLatest); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("link %s: %w", runsLatest, err)
	}
	return nil
}

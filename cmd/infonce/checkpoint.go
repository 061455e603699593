package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/model"
	"github.com/infonce/infonce/worker"
)

func init() {
	register("checkpoint", command{summary: "verify or inspect a checkpoint: checkpoint verify|inspect PATH (a checkpoint, a folder of checkpoints or a run directory: its newest)", run: runCheckpoint})
}

func runCheckpoint(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{errors.New("usage: infonce checkpoint verify|inspect PATH")}
	}
	fs := flag.NewFlagSet("checkpoint "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err}
	}
	if fs.NArg() != 1 {
		return usageError{fmt.Errorf("usage: infonce checkpoint %s PATH", args[0])}
	}
	// PATH is a checkpoint, a folder of checkpoints or a run directory:
	// the latter two mean their newest checkpoint.
	path, err := checkpoint.Locate(fs.Arg(0))
	if err != nil {
		return err
	}
	if path != fs.Arg(0) {
		fmt.Fprintf(stderr, "%s: newest checkpoint %s\n", fs.Arg(0), path)
	}
	switch args[0] {
	case "verify":
		problems := checkpoint.Verify(path)
		if len(problems) == 0 {
			fmt.Fprintf(stdout, "%s: good\n", path)
			return nil
		}
		for _, p := range problems {
			fmt.Fprintf(stdout, "%s: %v\n", path, p)
		}
		return fmt.Errorf("%s: %d problem(s); a run resuming from its directory falls back to the previous good checkpoint", path, len(problems))
	case "inspect":
		m, err := checkpoint.Inspect(path)
		if err != nil {
			return err
		}
		out := struct {
			checkpoint.Manifest
			Towers []model.TowerInfo `json:"towers,omitempty"`
		}{Manifest: m}
		// The towers are rebuilt from the model configuration the
		// manifest records (checkpoints written before it have none).
		if s, ok := m.Extra[worker.ExtraModel]; ok {
			var mc model.Config
			if err := json.Unmarshal([]byte(s), &mc); err != nil {
				return fmt.Errorf("%s: model config: %w", path, err)
			}
			if out.Towers, err = mc.Describe(); err != nil {
				return fmt.Errorf("%s: model config: %w", path, err)
			}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return usageError{fmt.Errorf("unknown checkpoint action %q: use verify or inspect", args[0])}
}

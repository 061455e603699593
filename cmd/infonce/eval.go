package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/infonce/infonce/worker"
)

func init() {
	register("eval", command{summary: "evaluate a saved model: zero-shot, retrieval, linear probe", run: runEval})
}

func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	path := fs.String("checkpoint", "", "checkpoint directory (a step-… directory, or a run's checkpoints/ for the latest)")
	asJSON := fs.Bool("json", false, "print the evaluation as JSON")
	if _, err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *path == "" {
		return usageError{fmt.Errorf("--checkpoint is required")}
	}
	t, err := worker.LoadForEval(ctx, *path)
	if err != nil {
		return err
	}
	ev, err := t.Evaluate(ctx)
	if err != nil {
		return fmt.Errorf("evaluate %s: %w", *path, err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ev)
	}
	fmt.Fprintf(stdout, "%s\n", *path)
	fmt.Fprintf(stdout, "  zero-shot         top-1 %s  top-5 %s\n", pct(ev.ZeroShotTop1), pct(ev.ZeroShotTop5))
	fmt.Fprintf(stdout, "  retrieval R@1     image→text %s  text→image %s\n", pct(ev.RecallI2TAt1), pct(ev.RecallT2IAt1))
	printProbe(stdout, ev.LinearProbeAccuracy, ev.PixelProbeAccuracy)
	printVLA(stdout, &ev)
	return nil
}

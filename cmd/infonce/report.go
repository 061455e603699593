package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/infonce/infonce/observe"
)

func init() {
	register("report", command{summary: "render a run directory's metrics into PNG plots and an HTML summary", run: runReport})
}

func runReport(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: infonce report [--out DIR] RUN_DIR")
		fs.PrintDefaults()
	}
	out := fs.String("out", "", "directory of the report (default RUN_DIR/report)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() != 1 {
		return usageError{errors.New("give one run directory: infonce report [--out DIR] RUN_DIR")}
	}
	rep, err := observe.WriteReport(fs.Arg(0), *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "report of %d metrics lines: %s\n", rep.Lines, rep.HTML)
	if rep.Evaluations > 0 {
		fmt.Fprintf(stdout, "  %d evaluations plotted against the step in eval.png\n", rep.Evaluations)
	}
	if rep.Truncated > 0 {
		fmt.Fprintf(stdout, "  dropped a torn last line of metrics.jsonl\n")
	}
	return nil
}

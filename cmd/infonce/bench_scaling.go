package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/infonce/infonce/bench/scaling"
)

func init() {
	registerBench("scaling", benchmark{
		summary: "training throughput, scaling efficiency and step-time breakdown against the number of workers",
		run:     runBenchScaling,
	})
}

func runBenchScaling(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary: %w", err)
	}
	err = scaling.Main(ctx, args, stdout, stderr, exe)
	var ue scaling.UsageError
	if errors.As(err, &ue) {
		return usageError{ue.Err}
	}
	return err
}

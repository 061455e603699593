package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"

	"github.com/infonce/infonce/allreduce/bench"
)

func init() {
	registerBench("allreduce", benchmark{
		summary: "collectives between worker processes on loopback (nccl-tests style table)",
		run:     runBenchAllreduce,
	})
	register("allreduce-peer", command{
		summary: "one worker of 'infonce bench allreduce'",
		hidden:  true,
		run: func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			return usageFrom(bench.Peer(ctx, args, os.Stdin, stdout, stderr))
		},
	})
}

func runBenchAllreduce(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	spawn := func(ctx context.Context, peerArgs []string) *exec.Cmd {
		return exec.CommandContext(ctx, exe, append([]string{"allreduce-peer"}, peerArgs...)...)
	}
	return usageFrom(bench.Main(ctx, args, stdout, stderr, spawn))
}

// usageFrom turns the bench package's usage errors into the command's.
func usageFrom(err error) error {
	var ue bench.UsageError
	if errors.As(err, &ue) {
		return usageError{ue.Err}
	}
	return err
}

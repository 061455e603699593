// Command infonce trains contrastive encoders on one machine or many.
//
// Usage:
//
//	infonce <command> [flags]
//
// Each command lives in its own file of this package and registers itself
// in commands from an init function.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand of the binary.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
	hidden  bool // internal commands started by the binary itself
}

var commands = map[string]command{}

func register(name string, c command) {
	if _, dup := commands[name]; dup {
		panic("infonce: command registered twice: " + name)
	}
	commands[name] = c
}

func main() {
	ctx, stop := signalContext()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitSignal is the exit status of a process that a second SIGINT or
// SIGTERM ended at once (128 + SIGINT, as a shell reports it).
const exitSignal = 130

// signalContext ends on SIGINT or SIGTERM: a graceful stop (the run stops
// after its current step and saves). A second signal exits at once with
// status exitSignal, for a stop that takes too long.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		onSignals(sigs, done, cancel, os.Stderr, os.Exit)
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}

// onSignals cancels the run on the first signal and calls exit on the
// second, until done.
func onSignals(sigs <-chan os.Signal, done <-chan struct{}, cancel func(), stderr io.Writer, exit func(int)) {
	select {
	case s := <-sigs:
		fmt.Fprintf(stderr, "infonce: %v: stopping after the current step; %v again exits at once\n", s, s)
		cancel()
	case <-done:
		return
	}
	select {
	case s := <-sigs:
		fmt.Fprintf(stderr, "infonce: %v again: exiting at once without a checkpoint\n", s)
		exit(exitSignal)
	case <-done:
	}
}

// run executes one command line and returns the process exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "infonce: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	if err := c.run(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "infonce %s: %v\n", args[0], err)
			return 2
		}
		fmt.Fprintf(stderr, "infonce %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// usageError marks a mistake in the command line (exit status 2).
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: infonce <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n, c := range commands {
		if !c.hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'infonce <command> -h' for the flags of a command.")
}

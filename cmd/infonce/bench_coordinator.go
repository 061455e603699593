package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// 'infonce bench coordinator' measures the peak resident memory of a
// standalone coordinator while workers train through it.

func init() {
	registerBench("coordinator", benchmark{
		summary: "peak resident memory of a standalone coordinator during a run",
		run:     runBenchCoordinator,
	})
}

const coordinatorBenchUsage = `usage: infonce bench coordinator [--workers 2] [--steps 60] [--out DIR] [-- training flags]

Starts 'infonce coordinator --workers N --steps S' on loopback and N
'infonce worker --no-eval' processes, waits for the run to end, and prints
the peak resident set size (the kernel's maxrss) of the coordinator and of
each worker (Linux; elsewhere 0). Training flags after -- go to the coordinator.

flags:
`

var coordinatorListenRE = regexp.MustCompile(`coordinator listening on (\S+) \(gossip`)

// coordinatorRun is the peak RSS of the coordinator and of every worker.
type coordinatorRun struct {
	Coordinator int64
	Workers     []int64
}

func measureCoordinator(ctx context.Context, self string, workers, steps int, out string, extra []string) (coordinatorRun, error) {
	var res coordinatorRun
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clog, err := os.Create(filepath.Join(out, "coordinator.log"))
	if err != nil {
		return res, fmt.Errorf("coordinator log: %w", err)
	}
	defer clog.Close()
	args := append([]string{"coordinator", "--workers", strconv.Itoa(workers), "--steps", strconv.Itoa(steps),
		"--out", filepath.Join(out, "run")}, extra...)
	coord := exec.CommandContext(ctx, self, args...)
	coord.Stderr = clog
	stdout, err := coord.StdoutPipe()
	if err != nil {
		return res, fmt.Errorf("coordinator: %w", err)
	}
	if err := coord.Start(); err != nil {
		return res, fmt.Errorf("start the coordinator: %w", err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			fmt.Fprintln(clog, sc.Text())
			if m := coordinatorListenRE.FindStringSubmatch(sc.Text()); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
		}
		close(addr)
	}()
	var a string
	select {
	case a = <-addr:
	case <-time.After(30 * time.Second):
	}
	if a == "" {
		cancel()
		werr := coord.Wait()
		return res, fmt.Errorf("the coordinator did not report its address (log %s): %w", clog.Name(), errors.Join(werr, errors.New("no address")))
	}
	procs := make([]*exec.Cmd, workers)
	for i := range procs {
		wlog, err := os.Create(filepath.Join(out, fmt.Sprintf("worker%d.log", i)))
		if err != nil {
			return res, fmt.Errorf("worker log: %w", err)
		}
		defer wlog.Close()
		procs[i] = exec.CommandContext(ctx, self, "worker", "--coordinator", a, "--no-eval")
		procs[i].Stdout, procs[i].Stderr = wlog, wlog
		if err := procs[i].Start(); err != nil {
			return res, fmt.Errorf("start worker %d: %w", i, err)
		}
	}
	var errs []error
	for i, p := range procs {
		if err := p.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("worker %d: %w (log %s)", i, err, filepath.Join(out, fmt.Sprintf("worker%d.log", i))))
		}
		res.Workers = append(res.Workers, processRSS(p.ProcessState))
	}
	if err := coord.Wait(); err != nil {
		errs = append(errs, fmt.Errorf("coordinator: %w (log %s)", err, clog.Name()))
	}
	res.Coordinator = processRSS(coord.ProcessState)
	return res, errors.Join(errs...)
}

func runBenchCoordinator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench coordinator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, coordinatorBenchUsage); fs.PrintDefaults() }
	workers := fs.Int("workers", 2, "worker processes")
	steps := fs.Int("steps", 60, "training steps")
	outFlag := fs.String("out", "", "directory of the run and the logs (default a new temporary directory)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if *workers < 1 || *steps < 1 {
		return usageError{fmt.Errorf("--workers %d, --steps %d: both must be at least 1", *workers, *steps)}
	}
	extra := fs.Args()
	for _, a := range extra {
		switch strings.TrimLeft(strings.SplitN(a, "=", 2)[0], "-") {
		case "out", "steps", "workers":
			return usageError{fmt.Errorf("training flag %s is set by the benchmark", a)}
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary: %w", err)
	}
	out, err := benchOutDir(*outFlag, "infonce-coordinator-")
	if err != nil {
		return err
	}
	res, err := measureCoordinator(ctx, self, *workers, *steps, out, extra)
	if err != nil {
		return err
	}
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB (%d kB)", float64(b)/(1<<20), b/1024) }
	fmt.Fprintf(stdout, "coordinator peak RSS: %s over a %d-step run of %d workers\n", mib(res.Coordinator), *steps, *workers)
	for i, w := range res.Workers {
		fmt.Fprintf(stdout, "worker %d peak RSS:   %s\n", i, mib(w))
	}
	fmt.Fprintf(stdout, "run and logs in %s\n", out)
	return nil
}

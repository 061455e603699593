package testcluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infonce/infonce/rundir"
	"github.com/infonce/infonce/worker"
)

// Options describe a cluster.
type Options struct {
	Workers  int // the coordinator's --workers
	Min, Max int // --min-workers, --max-workers (0: the coordinator's default)
	Steps    int
	// TrainArgs are the training flags of the run (data, model, steps,
	// --out); the coordinator hands them to its workers.
	TrainArgs  func(out string, steps int) []string
	CoordArgs  []string // extra coordinator flags
	WorkerArgs []string // extra flags of every worker
	Env        []string // extra environment of every process
	// SampleLogs makes every worker log the samples of each step it
	// contributed to into Dir/NAME.samples.jsonl.
	SampleLogs bool
	Binary     string        // "" : Binary()
	Listen     time.Duration // how long the coordinator may take to listen (0: 20 s)
}

// Cluster is a coordinator and its workers, processes of the binary on
// loopback. Its fields are for reading.
type Cluster struct {
	T       testing.TB
	Dir     string // the processes' logs and sample logs
	Out     string // the run directory (--out)
	Steps   int
	Opts    Options
	Coord   *Proc
	Addr    string // the coordinator's gRPC address
	Gossip  string // its memberlist address
	Workers map[string]*Proc
	N       int // workers started
	dumped  bool
}

var listenRE = regexp.MustCompile(`coordinator listening on (\S+) \(gossip (\S*)\)`)

// New starts a coordinator on free loopback ports (it picks them and logs
// them); workers are added with AddWorker. The run directory is Dir/run.
// When the test fails, the tails of every process's log go to its log.
func New(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.TrainArgs == nil {
		t.Fatal("testcluster: Options.TrainArgs is required")
	}
	dir := t.TempDir()
	c := &Cluster{T: t, Dir: dir, Out: filepath.Join(dir, "run"), Steps: o.Steps, Workers: map[string]*Proc{}, Opts: o}
	t.Cleanup(func() {
		if t.Failed() && !c.dumped && c.Coord != nil {
			c.Dump()
		}
	})
	c.StartCoordinator(nil)
	return c
}

// StartCoordinator starts (or restarts) the coordinator, on the previous
// ports if there were any, and waits until it listens.
func (c *Cluster) StartCoordinator(extra []string) {
	t := c.T
	t.Helper()
	args := append([]string{"coordinator", "--workers", strconv.Itoa(c.Opts.Workers)}, c.Opts.TrainArgs(c.Out, c.Steps)...)
	if c.Opts.Min > 0 {
		args = append(args, "--min-workers", strconv.Itoa(c.Opts.Min))
	}
	if c.Opts.Max > 0 {
		args = append(args, "--max-workers", strconv.Itoa(c.Opts.Max))
	}
	if c.Addr != "" {
		_, port, _ := strings.Cut(c.Addr, ":")
		_, gport, _ := strings.Cut(c.Gossip, ":")
		args = append(args, "--port", port, "--gossip-port", gport)
	}
	args = append(append(args, c.Opts.CoordArgs...), extra...)
	c.Coord = Start(t, ProcOptions{Binary: c.Opts.Binary, Dir: c.Dir, Name: "coordinator", Args: args, Env: c.Opts.Env})
	limit := c.Opts.Listen
	if limit == 0 {
		limit = 20 * time.Second
	}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		// A restart appends to the same log: take the last match.
		if all := listenRE.FindAllStringSubmatch(c.Coord.Output(), -1); len(all) > 0 {
			m := all[len(all)-1]
			c.Addr, c.Gossip = m[1], m[2]
			return
		}
		if !c.Coord.Alive() {
			t.Fatalf("coordinator exited: %v\n%s", c.Coord.Err(), Tail(c.Coord.Output(), 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("coordinator did not listen within %v:\n%s", limit, Tail(c.Coord.Output(), 30))
}

// WorkerOptions are the options of one worker.
type WorkerOptions struct {
	Env  []string // extra environment (after the cluster's)
	Args []string // extra flags (after the cluster's)
	UID  uint32   // run as this user (0: as the test)
	CPUs []int    // pin to these cores (nil: any)
}

// AddWorker starts a worker with extra environment and flags. Workers are
// named worker1, worker2, … in the order they start; they skip the final
// evaluation and give up on an unresponsive peer after 3 s.
func (c *Cluster) AddWorker(env []string, extra ...string) *Proc {
	c.T.Helper()
	return c.AddWorkerWith(WorkerOptions{Env: env, Args: extra})
}

// AddWorkerWith starts a worker with o.
func (c *Cluster) AddWorkerWith(o WorkerOptions) *Proc {
	c.T.Helper()
	c.N++
	name := fmt.Sprintf("worker%d", c.N)
	env := append([]string(nil), c.Opts.Env...)
	if c.Opts.SampleLogs {
		env = append(env, worker.EnvSampleLog+"="+c.SampleLog(name))
	}
	env = append(env, o.Env...)
	args := append([]string{"worker", "--coordinator", c.Addr, "--name", name, "--no-eval", "--op-timeout", "3s"}, c.Opts.WorkerArgs...)
	args = append(args, o.Args...)
	p := Start(c.T, ProcOptions{Binary: c.Opts.Binary, Dir: c.Dir, Name: name, Args: args, Env: env, UID: o.UID, CPUs: o.CPUs})
	c.Workers[name] = p
	return p
}

// SampleLog is the sample log of the worker name (with Options.SampleLogs).
func (c *Cluster) SampleLog(name string) string {
	return filepath.Join(c.Dir, name+".samples.jsonl")
}

// Dump logs the tails of every process's output.
func (c *Cluster) Dump() {
	c.T.Helper()
	c.dumped = true
	c.T.Logf("coordinator:\n%s", Tail(c.Coord.Output(), 40))
	names := make([]string, 0, len(c.Workers))
	for n := range c.Workers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c.T.Logf("%s:\n%s", n, Tail(c.Workers[n].Output(), 25))
	}
}

// WaitDone waits up to d for every process to exit and fails the test
// when one failed, unless it is named in allowFail or was killed with
// SIGKILL by the test.
func (c *Cluster) WaitDone(d time.Duration, allowFail ...string) {
	c.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := c.WaitDoneContext(ctx, allowFail...); err != nil {
		c.Dump()
		c.T.Fatal(err)
	}
}

// WaitDoneContext is WaitDone until ctx ends.
func (c *Cluster) WaitDoneContext(ctx context.Context, allowFail ...string) error {
	ps := []*Proc{c.Coord}
	for _, p := range c.Workers {
		ps = append(ps, p)
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-ctx.Done():
			return fmt.Errorf("%s still running: %w", p.Name, ctx.Err())
		}
		if p.err == nil || p.KilledByTest() || contains(allowFail, p.Name) {
			continue
		}
		return fmt.Errorf("%s: %w", p.Name, p.err)
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// StopGracefully asks every worker to stop (SIGTERM: the request rides in
// the next step's reduction, rank 0 saves, all exit), waits up to d for
// them, then sends SIGTERM to the coordinator.
func (c *Cluster) StopGracefully(d time.Duration) {
	c.T.Helper()
	for _, p := range c.Workers {
		if p.Alive() {
			_ = p.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range c.Workers {
		select {
		case <-p.done:
		case <-time.After(d):
			c.Dump()
			c.T.Fatalf("%s did not stop within %v of SIGTERM", p.Name, d)
		}
	}
	_ = c.Coord.Signal(syscall.SIGTERM)
}

// Metrics are the run's metrics lines so far, in file order (lines that
// do not decode, such as one being written, are skipped).
func (c *Cluster) Metrics() []rundir.Metric {
	c.T.Helper()
	return ReadMetrics(c.T, c.Out)
}

// Summary reads the run's summary.json.
func (c *Cluster) Summary() (*rundir.RawSummary, error) { return rundir.ReadSummary(c.Out) }

// WaitStepContext waits until metrics.jsonl has a line for step or a
// later one and returns the last line.
func (c *Cluster) WaitStepContext(ctx context.Context, step int64) (rundir.Metric, error) {
	for {
		ms, _, err := rundir.ReadMetricsSkipping(c.Out)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rundir.Metric{}, err
		}
		if len(ms) > 0 && ms[len(ms)-1].Step >= step {
			return ms[len(ms)-1], nil
		}
		select {
		case <-ctx.Done():
			return rundir.Metric{}, fmt.Errorf("no step %d: %w", step, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// WaitStep is WaitStepContext for at most d; it fails the test, with the
// processes' logs, when the step does not come.
func (c *Cluster) WaitStep(step int64, d time.Duration) rundir.Metric {
	c.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	m, err := c.WaitStepContext(ctx, step)
	if err != nil {
		c.Dump()
		c.T.Fatalf("no step %d within %v: %v", step, d, err)
	}
	return m
}

// FirstStepAfter returns the first metrics line of a generation newer
// than gen, waiting up to d.
func (c *Cluster) FirstStepAfter(gen uint64, d time.Duration) (rundir.Metric, bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, m := range c.Metrics() {
			if m.Generation > gen {
				return m, true
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return rundir.Metric{}, false
}

var rankRE = regexp.MustCompile(`msg=generation gen=(\d+) action=run rank=(\d+)`)

// RankOf finds the live worker holding rank r in the latest generation
// the workers' logs announce, and that generation.
func (c *Cluster) RankOf(r int) (*Proc, uint64) {
	var best *Proc
	var bestGen uint64
	for _, p := range c.Workers {
		if !p.Alive() {
			continue
		}
		for _, m := range rankRE.FindAllStringSubmatch(p.Output(), -1) {
			g, _ := strconv.ParseUint(m[1], 10, 64)
			rk, _ := strconv.Atoi(m[2])
			if rk == r && g >= bestGen {
				best, bestGen = p, g
			}
		}
	}
	return best, bestGen
}

// ReadMetrics returns run's metrics lines in file order, skipping lines
// that do not decode (a line being written); none when the run has not
// logged yet. Other errors fail t.
func ReadMetrics(t testing.TB, run string) []rundir.Metric {
	t.Helper()
	ms, _, err := rundir.ReadMetricsSkipping(run)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

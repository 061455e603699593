package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/coordinator"
	"github.com/infonce/infonce/internal/affinity"
	"github.com/infonce/infonce/worker"
)

func init() {
	register("coordinator", command{summary: "run the coordinator of a distributed job", run: runCoordinator})
	register("worker", command{summary: "run one worker of a distributed job (--coordinator HOST:PORT)", run: runWorker})
}

// coordinatorFlags binds the coordinator's settings.
type coordinatorFlags struct {
	min, max          int
	bind, advertise   string
	port, gossipPort  int
	joinTimeout       time.Duration
	rendezvousTimeout time.Duration
	token             string
	lan               bool
	jobID             string
	http              string        // --http, served by http.go
	sec               securityFlags // --cluster-key, --tls-* (security.go)
	maxBadSteps       int
	maxSaveFailures   int
	overwrite         bool // --overwrite: a new run may remove another run's checkpoints in --out
}

func (c *coordinatorFlags) bindFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.min, "min-workers", 0, "least number of workers to train with (default --workers)")
	fs.IntVar(&c.max, "max-workers", 0, "most number of workers (default --min-workers)")
	fs.StringVar(&c.bind, "bind", "", "IP the coordinator binds (default 127.0.0.1, or 0.0.0.0 with --lan)")
	fs.StringVar(&c.advertise, "advertise", "", "IP workers reach the coordinator at (default --bind)")
	fs.IntVar(&c.port, "port", -1, "gRPC port (default 0: any free port, or 7950 with --lan)")
	fs.IntVar(&c.gossipPort, "gossip-port", -1, "memberlist port (default 0: any free port, or 7946 with --lan)")
	fs.DurationVar(&c.joinTimeout, "join-timeout", 0, "wait at most this long for --min-workers at the start (default 1m, or 10m with --lan)")
	fs.DurationVar(&c.rendezvousTimeout, "rendezvous-timeout", 0, "with fewer than --min-workers left, wait this long for replacements, then checkpoint and stop")
	fs.StringVar(&c.token, "token", "", "shared secret every worker must present")
	fs.BoolVar(&c.lan, "lan", false, "settings for workers on other machines (LAN timings, bind all interfaces)")
	fs.StringVar(&c.jobID, "job-id", "infonce", "name of the run; workers of another job are refused")
	fs.BoolVar(&c.overwrite, "overwrite", false, "a new run (without --resume) removes the checkpoints of another run in --out; without it such an --out is refused")
	fs.IntVar(&c.maxSaveFailures, "max-save-failures", worker.DefaultMaxSaveFailures, "a checkpoint save that fails is retried at the next --checkpoint-every interval; after this many in a row every rank stops")
	fs.IntVar(&c.maxBadSteps, "max-bad-steps", worker.DefaultMaxBadSteps, "skip steps whose loss or gradient is NaN or Inf, and stop after this many in a row")
	c.bindHTTP(fs) // --http (http.go)
	c.sec.bind(fs) // --cluster-key, --tls-* (security.go)
}

func (c *coordinatorFlags) config(workers int, cfg worker.Config, logger *slog.Logger) (coordinator.Config, error) {
	cc := coordinator.DefaultLocalConfig()
	if c.lan {
		cc = coordinator.DefaultLANConfig()
	}
	cc.JobID = c.jobID
	cc.MinWorkers, cc.MaxWorkers = workers, workers
	if c.min > 0 {
		cc.MinWorkers = c.min
	}
	cc.MaxWorkers = max(cc.MinWorkers, cc.MaxWorkers)
	if c.max > 0 {
		cc.MaxWorkers = c.max
	}
	if cc.MaxWorkers < cc.MinWorkers {
		return cc, usageError{fmt.Errorf("--max-workers %d is below --min-workers %d", cc.MaxWorkers, cc.MinWorkers)}
	}
	if c.bind != "" {
		cc.BindAddr = c.bind
	}
	cc.AdvertiseAddr = c.advertise
	if c.port >= 0 {
		cc.GRPCPort = c.port
	}
	if c.gossipPort >= 0 {
		cc.GossipPort = c.gossipPort
	}
	if c.joinTimeout > 0 {
		cc.JoinTimeout = c.joinTimeout
	}
	if c.rendezvousTimeout > 0 {
		cc.RendezvousTimeout = c.rendezvousTimeout
	}
	cc.Token = c.token
	if err := c.sec.applyCoordinator(&cc); err != nil {
		return cc, err
	}
	if c.maxBadSteps < 1 {
		return cc, usageError{fmt.Errorf("--max-bad-steps %d: must be at least 1", c.maxBadSteps)}
	}
	if c.maxSaveFailures < 1 {
		return cc, usageError{fmt.Errorf("--max-save-failures %d: must be at least 1", c.maxSaveFailures)}
	}
	raw, err := worker.EncodeRunSpec(worker.RunSpec{Config: cfg, MaxBadSteps: c.maxBadSteps, MaxSaveFailures: c.maxSaveFailures})
	if err != nil {
		return cc, err
	}
	cc.RunConfig = raw
	cc.Fingerprint = cfg.FingerprintFields()
	cc.Logger = logger.With("role", "coordinator")
	return cc, nil
}

// resumeFrom resolves --resume into the checkpoint a run starts from:
// "latest" (the newest good checkpoint in --out), a checkpoint directory or
// a directory of checkpoints.
func resumeFrom(ctx context.Context, spec, out string) (*coordinator.Checkpoint, error) {
	c, _, err := loadResume(ctx, spec, out)
	if c == nil || err != nil {
		return nil, err
	}
	return &coordinator.Checkpoint{Step: c.Manifest.Step, Path: c.Dir}, nil
}

// resumeChecked is resumeFrom for a distributed run: it also accepts
// "auto" (the latest checkpoint in --out, or none when there is none: how
// a restarted coordinator picks up its run), and refuses a checkpoint of
// another run's shape before any worker starts.
func resumeChecked(ctx context.Context, spec, out string, cfg worker.Config) (*coordinator.Checkpoint, error) {
	c, _, err := loadResume(ctx, spec, out)
	if c == nil || err != nil {
		return nil, err
	}
	var saved worker.Config
	if err := json.Unmarshal(c.Manifest.Config, &saved); err != nil {
		return nil, fmt.Errorf("--resume %s: checkpoint %s: config: %w", spec, c.Dir, err)
	}
	if saved.Fingerprint() != cfg.Fingerprint() {
		return nil, usageError{fmt.Errorf("--resume %s: checkpoint %s comes from a model of another shape or another run (%s); this run is %s: resume with the flags of that run, or start afresh in another --out",
			spec, c.Dir, saved.Fingerprint(), cfg.Fingerprint())}
	}
	return &coordinator.Checkpoint{Step: c.Manifest.Step, Path: c.Dir}, nil
}

// loadResume loads the checkpoint --resume names (nil for none).
func loadResume(ctx context.Context, spec, out string) (*checkpoint.Checkpoint, string, error) {
	if spec == "" {
		return nil, "", nil
	}
	path := spec
	if spec == "latest" || spec == "auto" {
		path = worker.CheckpointDir(out)
	}
	c, err := checkpoint.Open(ctx, path)
	if spec == "auto" && errors.Is(err, checkpoint.ErrNoCheckpoint) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("--resume %s: %w", spec, err)
	}
	return c, c.Dir, nil
}

func runCoordinator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := worker.DefaultConfig()
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	trainFlags(fs, &cfg)
	var cf coordinatorFlags
	cf.bindFlags(fs)
	workers := fs.Int("workers", 1, "number of workers (sets --min-workers and --max-workers)")
	fs.Int64Var(&cfg.CheckpointEvery, "checkpoint-every", cfg.CheckpointEvery, "rank 0 saves a checkpoint every N steps (0: only at the end and on a stop)")
	fs.IntVar(&cfg.ChecksumEvery, "checksum-every", cfg.ChecksumEvery, "compare a checksum of the parameters across workers every N steps (0: never)")
	fs.IntVar(&cfg.BucketKiB, "bucket-kib", cfg.BucketKiB, "with several workers, all-reduce the gradient in buckets of this many KiB during the backward pass (0: in one piece after it)")
	gradWireFlags(fs, &cfg)
	resume := fs.String("resume", "", "start from a checkpoint: a directory, 'latest' in --out, or 'auto' (latest if --out holds one: how a restarted coordinator continues its run)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	set, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	objectiveDefaults(&cfg, set)
	logger, err := newLogger(*logFormat, stderr)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	publish, err := settleRun(ctx, &cfg, set, *resume, cf.jobID, time.Now(), logger) // runs.go
	if err != nil {
		return err
	}
	cc, err := cf.config(*workers, cfg, logger)
	if err != nil {
		return err
	}
	if cc.Resume, err = resumeChecked(ctx, *resume, cfg.Out, cfg); err != nil {
		return err
	}
	if *resume == "" {
		if err := worker.StartFresh(ctx, cfg.Out, cfg.RunID, cf.overwrite, logger); err != nil {
			return err
		}
	}
	if err := publish(); err != nil {
		return err
	}
	srv, err := coordinator.New(cc)
	if err != nil {
		return err
	}
	stopHTTP, err := cf.serveCoordinator(ctx, srv, cfg, logger) // --http (http.go)
	if err != nil {
		return errors.Join(err, srv.Close())
	}
	defer stopHTTP()
	fmt.Fprintf(stdout, "coordinator listening on %s (gossip %s)\n", srv.Addr(), srv.GossipAddr())
	if err := srv.Serve(ctx); err != nil {
		return err
	}
	if g := srv.Status().Current; strings.HasPrefix(g.Reason, "run aborted") {
		return fmt.Errorf("generation %d: %s", g.Number, g.Reason)
	}
	return nil
}

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	var o worker.MemberOptions
	// A worker may be given the run's training flags: they are then checked
	// against the run's (model shape, objective, data, batch, seed,
	// optimizer) when it joins, and a worker that differs is refused.
	own := worker.DefaultConfig()
	trainFlags(fs, &own)
	gradWireFlags(fs, &own) // checked too when the wire format is lossy
	fs.StringVar(&o.Coordinator, "coordinator", "", "host:port of the coordinator (required)")
	fs.StringVar(&o.Token, "token", "", "shared secret of the run")
	fs.StringVar(&o.Name, "name", "", "label of this worker in logs (default the host name)")
	fs.StringVar(&o.DataBind, "data-bind", "127.0.0.1:0", "data-plane listen address host:port")
	fs.StringVar(&o.DataAdvertise, "data-advertise", "", "host other workers dial for the data plane (default the bound host)")
	fs.StringVar(&o.GossipBind, "gossip-bind", "127.0.0.1", "memberlist bind IP, or a host name resolved at start (empty: no gossip)")
	fs.StringVar(&o.GossipAdvertise, "gossip-advertise", "", "memberlist advertise IP or host name (default --gossip-bind)")
	fs.IntVar(&o.GossipPort, "gossip-port", 0, "memberlist port (0: any free port)")
	fs.BoolVar(&o.GossipLAN, "lan", false, "LAN gossip timings (for workers on other machines)")
	fs.DurationVar(&o.OpTimeout, "op-timeout", 10*time.Second, "deadline of one collective operation")
	fs.DurationVar(&o.JoinTimeout, "join-timeout", worker.DefaultJoinTimeout, "give up when the coordinator does not answer the join within this long")
	noEval := fs.Bool("no-eval", false, "skip the evaluation at the end (rank 0)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this worker to this file")
	fs.StringVar(&o.OutRoot, "out-root", "", "without --out: the coordinator's run directory must lie inside this directory")
	dataShm := fs.Bool("data-shm", true, "exchange data-plane frames with workers of this machine through shared memory (false: always TCP)")
	httpAddr := httpFlag(fs) // --http (http.go)
	var sec securityFlags
	sec.bind(fs) // --cluster-key, --tls-* (security.go)
	set, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	o.NoSharedMemory = !*dataShm
	if set["out"] {
		o.Out = own.Out
	}
	if trainFlagsSet(set) {
		objectiveDefaults(&own, set)
		o.Fingerprint = own.FingerprintFields()
	}
	if o.Coordinator == "" {
		return usageError{errors.New("--coordinator HOST:PORT is required")}
	}
	if err := sec.applyWorker(&o); err != nil {
		return err
	}
	// A container knows its own address only by name (compose gives every
	// replica the same host name, mapped to its own IP).
	if o.GossipBind, err = resolveIP(ctx, "--gossip-bind", o.GossipBind); err != nil {
		return err
	}
	if o.GossipAdvertise, err = resolveIP(ctx, "--gossip-advertise", o.GossipAdvertise); err != nil {
		return err
	}
	if o.Name == "" {
		o.Name, _ = os.Hostname()
	}
	logger, err := newLogger(*logFormat, stderr)
	if err != nil {
		return err
	}
	o.Logger, o.Progress, o.Evaluate = logger, stdout, !*noEval
	stopHTTP, err := serveWorker(ctx, *httpAddr, &o, logger) // --http (http.go)
	if err != nil {
		return err
	}
	defer stopHTTP()
	sum, err := worker.RunMember(ctx, o)
	if errors.Is(err, worker.ErrStopped) {
		fmt.Fprintf(stderr, "infonce worker: %v; the run continues with --resume latest\n", err)
		return nil
	}
	if err != nil {
		return err
	}
	if sum != nil {
		printSummary(stdout, sum)
	}
	return nil
}

// resolveIP returns host when it is empty or an IP address, else the first
// IPv4 address (or, without one, the first address) the host name resolves
// to.
func resolveIP(ctx context.Context, flagName, host string) (string, error) {
	if host == "" || net.ParseIP(host) != nil {
		return host, nil
	}
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return "", usageError{fmt.Errorf("%s %s: not an IP address, and the name does not resolve: %v", flagName, host, err)}
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip.String(), nil
		}
	}
	return ips[0].String(), nil
}

// trainFlagsSet reports whether any flag of a training configuration other
// than the run directory and the logging period was set.
func trainFlagsSet(set map[string]bool) bool {
	probe := flag.NewFlagSet("probe", flag.ContinueOnError)
	var cfg worker.Config
	trainFlags(probe, &cfg)
	gradWireFlags(probe, &cfg)
	found := false
	probe.VisitAll(func(f *flag.Flag) {
		if set[f.Name] && f.Name != "out" && f.Name != "log-every" {
			found = true
		}
	})
	return found
}

// launchLocal runs a whole distributed job on this machine: an embedded
// coordinator and n worker processes of this binary on loopback, the same
// code path as on a cluster.
//
// A worker that dies is replaced by a new process, up to maxRestarts times
// in the whole job; the new worker joins the running ring at its next step
// boundary. The launch succeeds when the training finished (a worker
// reported the last step to the coordinator), even if workers were lost on
// the way: those are warnings.
func launchLocal(ctx context.Context, cfg worker.Config, n, threads, cores int, cf coordinatorFlags, resume string, evaluate bool, maxRestarts int, logger *slog.Logger, stdout, stderr io.Writer) error {
	cc, err := cf.config(n, cfg, logger)
	if err != nil {
		return err
	}
	if cc.Resume, err = resumeChecked(ctx, resume, cfg.Out, cfg); err != nil {
		return err
	}
	secrets, err := localSecrets(&cc, cf.sec) // security.go
	if err != nil {
		return err
	}
	if resume == "" {
		if err := worker.StartFresh(ctx, cfg.Out, cfg.RunID, cf.overwrite, logger); err != nil {
			return err
		}
	}
	srv, err := coordinator.New(cc)
	if err != nil {
		return err
	}
	stopHTTP, err := cf.serveCoordinator(ctx, srv, cfg, logger) // --http (http.go)
	if err != nil {
		return errors.Join(err, srv.Close())
	}
	defer stopHTTP()
	serveCtx, stopServe := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServe()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx) }()
	logger.Info("coordinator listening", "addr", srv.Addr(), "gossip", srv.GossipAddr())

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary: %w", err)
	}
	if threads <= 0 {
		// The machine's cores shared out. Workers of one machine exchange
		// their data through shared memory, which needs no thread of its
		// own, and one thread each is faster than two (docs/BENCHMARKS.md,
		// "Worker defaults"). Over gRPC (TLS) a worker needs a second
		// thread: at one, its network goroutines wait for the compute to
		// yield.
		least := 1
		if cf.sec.tlsCert != "" {
			least = 2
		}
		threads = max(least, runtime.NumCPU()/n)
	}
	sup := &supervisor{
		start: func(i, incarnation int) (*exec.Cmd, error) {
			name := "w" + strconv.Itoa(i)
			if incarnation > 0 {
				name += "-r" + strconv.Itoa(incarnation) // a new member: the dead one's name is gone
			}
			args := []string{"worker", "--coordinator", srv.Addr(), "--name", name, "--out", cfg.Out}
			if !evaluate {
				args = append(args, "--no-eval")
			}
			c := exec.Command(exe, args...)
			c.Stdout, c.Stderr = stdout, stderr
			c.Env = append(append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(threads)), secrets...)
			var cpus []int
			if cores > 0 {
				cpus = affinity.Spread(i, cores, runtime.NumCPU())
			}
			return c, affinity.Start(c, cpus)
		},
		finished: func() bool { return srv.Status().Finished != nil },
		restarts: maxRestarts,
		log:      logger,
	}
	errs := sup.run(ctx, n)
	sum := sup.summary()
	if sum.lost > 0 || sum.restarted > 0 {
		logger.Info("workers", "lost", sum.lost, "restarted", sum.restarted)
	}
	if sum.finished {
		for _, err := range errs {
			logger.Warn("a worker was lost; the others finished the training", "err", err)
		}
		errs = nil
	}
	stopServe()
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
		logger.Warn("coordinator", "err", err)
	}
	if ctx.Err() != nil {
		return errors.Join(append(errs, fmt.Errorf("stopped: %w", ctx.Err()))...)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if !sum.finished {
		return errors.New("the workers exited before the training finished")
	}
	return nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/internal/lineage"
	"github.com/infonce/infonce/rundir"
	"github.com/infonce/infonce/worker"
)

func init() {
	registerBench("chaos", benchmark{
		summary: "train a job of 4 worker processes while a seeded schedule kills, stops and cuts them off; check that every batch was applied once",
		run:     runBenchChaos,
	})
}

// chaosConfig is one chaos run.
type chaosConfig struct {
	Workers         int           `json:"workers"`
	Steps           int           `json:"steps"`
	Faults          int           `json:"faults"`
	Seed            uint64        `json:"seed"`
	NTrain          int           `json:"n_train"`
	Batch           int           `json:"batch"`
	Hold            time.Duration `json:"hold_ns"`
	GapMin          time.Duration `json:"gap_min_ns"`
	GapMax          time.Duration `json:"gap_max_ns"`
	WholeWait       time.Duration `json:"whole_wait_ns"`
	CheckpointEvery int           `json:"checkpoint_every"`
	Kinds           []faultKind   `json:"kinds"`
	// Skipped are the kinds this machine cannot inject, with the reason.
	Skipped map[faultKind]string `json:"skipped,omitempty"`
}

// chaosReport is the outcome of a chaos run (chaos.json).
type chaosReport struct {
	Config      chaosConfig                 `json:"config"`
	Results     []faultResult               `json:"faults"`
	Recovery    recoveryStats               `json:"recovery"`
	ByKind      map[faultKind]recoveryStats `json:"recovery_by_kind"`
	Restarts    int                         `json:"worker_restarts"`
	Generations int                         `json:"generations"`
	// Redone counts completions of a step beyond its first (in an
	// earlier generation whose state was later abandoned): work lost.
	Redone      int           `json:"steps_redone"`
	Lost        int           `json:"samples_lost"`
	Repeated    int           `json:"samples_repeated"`
	Problems    []string      `json:"problems,omitempty"`
	FinalLoss   float64       `json:"final_loss"`
	RefLoss     float64       `json:"reference_final_loss"`
	LossRelDiff float64       `json:"final_loss_relative_difference"`
	Wall        time.Duration `json:"wall_ns"`
	Finished    bool          `json:"finished"`
}

func runBenchChaos(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench chaos", flag.ContinueOnError)
	cfg := chaosConfig{}
	fs.IntVar(&cfg.Workers, "workers", 4, "worker processes")
	fs.IntVar(&cfg.Steps, "steps", 20000, "optimizer steps of the job (global batch 128 of a 1280-image slice of MNIST); enough to outlast the faults")
	fs.IntVar(&cfg.Faults, "faults", 24, "faults to inject")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of the training run and of the fault schedule")
	fs.DurationVar(&cfg.Hold, "hold", 3*time.Second, "how long a SIGSTOP, a partition or a full disk lasts")
	fs.DurationVar(&cfg.GapMin, "gap-min", 500*time.Millisecond, "least pause between a fault's recovery and the next fault")
	fs.DurationVar(&cfg.GapMax, "gap-max", 1500*time.Millisecond, "most pause between a fault's recovery and the next fault")
	fs.DurationVar(&cfg.WholeWait, "whole-wait", 10*time.Second, "before a fault, wait at most this long for every worker to be back in the ring")
	fs.IntVar(&cfg.CheckpointEvery, "checkpoint-every", 25, "rank 0 saves a checkpoint every N steps")
	kinds := fs.String("kinds", "", "comma-separated fault kinds (default all: "+kindList(allFaultKinds)+")")
	short := fs.Bool("short", false, "a short run for tests: 8000 steps, 20 faults, 1.5 s holds, short gaps, at most 3 s waiting for a whole ring")
	out := fs.String("out", "", "directory for the run, the logs and chaos.json (default a new temporary directory)")
	if _, err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *short {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["steps"] {
			cfg.Steps = 8000
		}
		if !set["faults"] {
			cfg.Faults = 20
		}
		if !set["hold"] {
			cfg.Hold = 1500 * time.Millisecond
		}
		if !set["gap-min"] {
			cfg.GapMin = 200 * time.Millisecond
		}
		if !set["gap-max"] {
			cfg.GapMax = 500 * time.Millisecond
		}
		if !set["whole-wait"] {
			cfg.WholeWait = 3 * time.Second
		}
	}
	cfg.NTrain, cfg.Batch = 1280, 128
	if cfg.Workers < 2 {
		return usageError{fmt.Errorf("--workers %d: a chaos run needs at least 2", cfg.Workers)}
	}
	if *kinds == "" {
		cfg.Kinds = append(cfg.Kinds, allFaultKinds...)
	} else {
		for _, k := range strings.Split(*kinds, ",") {
			k := faultKind(strings.TrimSpace(k))
			if !containsKind(allFaultKinds, k) {
				return usageError{fmt.Errorf("--kinds: unknown fault kind %q (kinds: %s)", k, kindList(allFaultKinds))}
			}
			cfg.Kinds = append(cfg.Kinds, k)
		}
	}
	if !worker.FaultInjectionFromEnv {
		return errors.New("bench chaos proves that every batch was applied once from the workers' sample logs, which only a binary built with -tags faultinject writes: go build -tags faultinject ./cmd/infonce")
	}
	dir, err := benchOutDir(*out, "infonce-chaos-")
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	h := &chaosHarness{cfg: cfg, dir: dir, log: log, stdout: stdout}
	rep, err := h.run(ctx)
	if rep != nil {
		h.print(rep)
		if b, jerr := json.MarshalIndent(rep, "", "  "); jerr == nil {
			_ = os.WriteFile(filepath.Join(dir, "chaos.json"), b, 0o644)
		}
	}
	if err != nil {
		return err
	}
	if len(rep.Problems) > 0 {
		return fmt.Errorf("chaos run failed %d checks (details above and in %s)", len(rep.Problems), filepath.Join(dir, "chaos.json"))
	}
	return nil
}

func kindList(ks []faultKind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

func containsKind(ks []faultKind, k faultKind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// chaosHarness runs the processes of one chaos run and injects its faults.
type chaosHarness struct {
	cfg    chaosConfig
	dir    string
	log    *slog.Logger
	stdout io.Writer

	exe                 string
	data, runDir, logs  string
	hostIP              string
	netns               *chaosNetns // nil: no partitions
	tmpfs               bool        // runDir is a tmpfs of its own
	coordPort, gossipPt int
	trainArgs           []string

	mu       sync.Mutex
	coord    *chaosProc
	slots    []*chaosProc // the current process of each worker slot
	restarts int
	finished atomic.Bool
	quit     chan struct{} // closed when the harness ends the run
	tail     *doneTail
}

func (h *chaosHarness) run(ctx context.Context) (*chaosReport, error) {
	start := time.Now()
	var err error
	if h.exe, err = os.Executable(); err != nil {
		return nil, fmt.Errorf("find this binary: %w", err)
	}
	h.data = filepath.Join(h.dir, "data")
	h.runDir = filepath.Join(h.dir, "run")
	h.logs = filepath.Join(h.dir, "logs")
	for _, d := range []string{h.runDir, h.logs} {
		if err := os.RemoveAll(d); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := dataset.WriteMNISTIDX(h.data, h.cfg.NTrain, 256); err != nil {
		return nil, err
	}
	h.trainArgs = []string{"--data", "idx:" + h.data, "--batch", strconv.Itoa(h.cfg.Batch), "--hidden", "64", "--text-hidden", "32",
		"--dim", "16", "--activation", "gelu", "--steps", strconv.Itoa(h.cfg.Steps), "--log-every", "1",
		"--seed", strconv.FormatUint(h.cfg.Seed, 10)}
	h.cfg.Skipped = map[faultKind]string{}
	h.prepare(ctx)
	defer h.cleanup()
	kinds := h.cfg.Kinds[:0:0]
	for _, k := range h.cfg.Kinds {
		if why, skip := h.cfg.Skipped[k]; skip {
			h.log.Warn("fault kind skipped", "kind", k, "reason", why)
			continue
		}
		kinds = append(kinds, k)
	}
	plan, err := chaosSchedule(h.cfg.Seed, h.cfg.Faults, kinds, h.cfg.GapMin, h.cfg.GapMax)
	if err != nil {
		return nil, err
	}

	// The undisturbed run of the same seed: one process.
	refDir := filepath.Join(h.dir, "reference")
	h.log.Info("reference run", "out", refDir, "steps", h.cfg.Steps)
	ref := exec.CommandContext(ctx, h.exe, append(append([]string{"train"}, h.trainArgs...), "--out", refDir)...)
	if b, err := ref.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("reference run: %w: %s", err, tailString(string(b), 2000))
	}
	refSum, err := rundir.ReadSummary(refDir)
	if err != nil {
		return nil, fmt.Errorf("reference run: %w", err)
	}

	h.tail = &doneTail{dir: h.logs, offsets: map[string]int64{}}
	h.quit = make(chan struct{})
	if err := h.startCoordinator(); err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	h.slots = make([]*chaosProc, h.cfg.Workers)
	for i := range h.cfg.Workers {
		wg.Add(1)
		go func() { defer wg.Done(); h.supervise(ctx, i) }()
	}
	rep := &chaosReport{Config: h.cfg, ByKind: map[faultKind]recoveryStats{}}
	rep.Results, err = h.inject(ctx, plan)
	if err != nil {
		h.log.Error("fault injection stopped", "err", err)
		rep.Problems = append(rep.Problems, "fault injection: "+err.Error())
	}

	// The end: the coordinator exits once the training finished and the
	// workers left.
	coordErr := h.waitCoordinator(ctx, 3*time.Minute)
	h.stopAll(30 * time.Second)
	wg.Wait()
	rep.Wall = time.Since(start)
	rep.Restarts = h.restarts
	if coordErr != nil {
		rep.Problems = append(rep.Problems, "coordinator: "+coordErr.Error())
	}
	h.check(rep, float64(refSum.FinalLoss))
	return rep, nil
}

// prepare finds out which kinds this machine can inject: partitions need
// root, ip and iptables (a network namespace for one worker slot); a full
// disk needs root to mount a small tmpfs as the run directory.
func (h *chaosHarness) prepare(ctx context.Context) {
	h.hostIP = "127.0.0.1"
	root := os.Geteuid() == 0
	if containsKind(h.cfg.Kinds, faultPartition) {
		switch {
		case !root:
			h.cfg.Skipped[faultPartition] = "needs root for a network namespace"
		default:
			ns, err := newChaosNetns(ctx)
			if err != nil {
				h.cfg.Skipped[faultPartition] = err.Error()
			} else {
				h.netns = ns
				h.hostIP = ns.HostIP
			}
		}
	}
	if containsKind(h.cfg.Kinds, faultDiskFull) {
		switch {
		case !root:
			h.cfg.Skipped[faultDiskFull] = "needs root to mount a tmpfs as the run directory"
		default:
			out, err := exec.CommandContext(ctx, "mount", "-t", "tmpfs", "-o", "size=48m,mode=0755", "infonce-chaos", h.runDir).CombinedOutput()
			if err != nil {
				h.cfg.Skipped[faultDiskFull] = fmt.Sprintf("mount a tmpfs: %v: %s", err, strings.TrimSpace(string(out)))
			} else {
				h.tmpfs = true
			}
		}
	}
}

func (h *chaosHarness) cleanup() {
	if h.tmpfs {
		// Keep the run's files: copy them out of the tmpfs first.
		keep := filepath.Join(h.dir, "run-files")
		_ = os.MkdirAll(keep, 0o755)
		for _, f := range []string{rundir.MetricsFile, rundir.SummaryFile} {
			if b, err := os.ReadFile(filepath.Join(h.runDir, f)); err == nil {
				_ = os.WriteFile(filepath.Join(keep, f), b, 0o644)
			}
		}
		if out, err := exec.Command("umount", h.runDir).CombinedOutput(); err != nil {
			h.log.Warn("umount the run directory", "dir", h.runDir, "err", err, "out", string(out))
		}
	}
	if h.netns != nil {
		h.netns.remove()
	}
}

// chaosProc is one process of the run.
type chaosProc struct {
	name  string
	slot  int // -1: the coordinator
	netns bool
	cmd   *exec.Cmd
	done  chan struct{}
	err   error
}

func (p *chaosProc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// start runs argv in a process group of its own, its output appended to
// logs/name.log.
func (h *chaosHarness) start(name string, argv []string, env []string) (*chaosProc, error) {
	f, err := os.OpenFile(filepath.Join(h.logs, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &chaosProc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (h *chaosHarness) startCoordinator() error {
	if h.coordPort == 0 {
		var err error
		if h.coordPort, err = freePort(h.hostIP, "tcp"); err != nil {
			return err
		}
		if h.gossipPt, err = freePort(h.hostIP, "udp"); err != nil {
			return err
		}
	}
	argv := append([]string{h.exe, "coordinator", "--workers", strconv.Itoa(h.cfg.Workers), "--min-workers", "2",
		"--max-workers", strconv.Itoa(h.cfg.Workers)}, h.trainArgs...)
	argv = append(argv, "--out", h.runDir, "--bind", h.hostIP, "--port", strconv.Itoa(h.coordPort),
		"--gossip-port", strconv.Itoa(h.gossipPt), "--resume", "auto", "--checkpoint-every", strconv.Itoa(h.cfg.CheckpointEvery),
		"--checksum-every", "50", "--rendezvous-timeout", "2m",
		// A full disk lasts a hold: the saves it fails are retried after it
		// rather than stopping the run (stopping every rank together after
		// --max-save-failures is tested on its own, TestMemberSaveFailures).
		"--max-save-failures", "1000000")
	p, err := h.start("coordinator", argv, nil)
	if err != nil {
		return err
	}
	p.slot = -1
	h.mu.Lock()
	h.coord = p
	h.mu.Unlock()
	return nil
}

// freePort is a port of ip that was free a moment ago, for both TCP and
// UDP when network is "udp" (memberlist binds both).
func freePort(ip, network string) (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return 0, fmt.Errorf("free port on %s: %w", ip, err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if network == "udp" {
			u, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				l.Close()
				continue
			}
			u.Close()
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no port of %s free for TCP and UDP", ip)
}

// supervise keeps a worker in slot i: a worker that fails (killed, or an
// error) before the run finished is replaced by a new process (a new
// member) after 300 ms; one that exits with status 0 left a finished or
// stopped run and is not. When the harness quits, it continues the
// process, gives it up to 30 s to leave and kills what is left.
func (h *chaosHarness) supervise(ctx context.Context, i int) {
	for incarnation := 0; ; incarnation++ {
		if h.finished.Load() || ctx.Err() != nil {
			return
		}
		name := fmt.Sprintf("s%d-%d", i, incarnation)
		ip := h.hostIP
		var argv []string
		inNS := h.netns != nil && i == h.cfg.Workers-1
		if inNS {
			argv = []string{"ip", "netns", "exec", h.netns.Name}
			ip = h.netns.NSIP
		}
		argv = append(argv, h.exe, "worker", "--coordinator", net.JoinHostPort(h.hostIP, strconv.Itoa(h.coordPort)),
			"--name", name, "--no-eval", "--op-timeout", "3s", "--data-bind", ip+":0", "--gossip-bind", ip)
		if h.netns != nil {
			// A partition must cut the data plane too: no shared memory.
			argv = append(argv, "--data-shm=false")
		}
		env := []string{"GOMAXPROCS=1", worker.EnvSampleLog + "=" + filepath.Join(h.logs, name+".samples.jsonl")}
		p, err := h.start(name, argv, env)
		if err != nil {
			h.log.Error("start worker", "slot", i, "err", err)
			return
		}
		p.slot, p.netns = i, inNS
		h.mu.Lock()
		h.slots[i] = p
		if incarnation > 0 {
			h.restarts++
		}
		h.mu.Unlock()
		select {
		case <-p.done:
		case <-h.quit:
			h.end(p, 30*time.Second)
			return
		case <-ctx.Done():
			h.end(p, 0)
			return
		}
		if p.err == nil {
			return
		}
		if h.finished.Load() || ctx.Err() != nil {
			return
		}
		h.log.Info("worker failed; starting a new one in its place", "worker", name, "err", p.err)
		select {
		case <-time.After(300 * time.Millisecond):
		case <-h.quit:
			return
		case <-ctx.Done():
			return
		}
	}
}

// end continues p (it may be stopped), waits up to d for it to exit and
// kills its process group then.
func (h *chaosHarness) end(p *chaosProc, d time.Duration) {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT)
	select {
	case <-p.done:
		return
	case <-time.After(d):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// waitCoordinator waits for the coordinator to exit and returns its error.
func (h *chaosHarness) waitCoordinator(ctx context.Context, limit time.Duration) error {
	h.mu.Lock()
	c := h.coord
	h.mu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-time.After(limit):
		return fmt.Errorf("still running %v after the last fault", limit)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stopAll ends the run's processes: the workers' supervisors end theirs
// (up to d each, in parallel), then the coordinator.
func (h *chaosHarness) stopAll(d time.Duration) {
	h.finished.Store(true)
	close(h.quit)
	h.mu.Lock()
	c := h.coord
	h.mu.Unlock()
	h.end(c, d)
}

var chaosRankRE = regexp.MustCompile(`msg=generation gen=(\d+) action=run rank=(\d+)`)

// rankOf returns the live worker that holds rank r in the newest
// generation the workers' logs announce.
func (h *chaosHarness) rankOf(r int) *chaosProc {
	h.mu.Lock()
	slots := append([]*chaosProc(nil), h.slots...)
	h.mu.Unlock()
	var best *chaosProc
	var bestGen uint64
	for _, p := range slots {
		if p == nil || !p.alive() {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(h.logs, p.name+".log"))
		for _, m := range chaosRankRE.FindAllStringSubmatch(string(b), -1) {
			g, _ := strconv.ParseUint(m[1], 10, 64)
			if rk, _ := strconv.Atoi(m[2]); rk == r && g >= bestGen {
				best, bestGen = p, g
			}
		}
	}
	return best
}

// ringGen is the newest generation a worker's log says it runs in (0:
// none).
func (h *chaosHarness) ringGen(p *chaosProc) uint64 {
	b, _ := os.ReadFile(filepath.Join(h.logs, p.name+".log"))
	var g uint64
	for _, m := range chaosRankRE.FindAllStringSubmatch(string(b), -1) {
		x, _ := strconv.ParseUint(m[1], 10, 64)
		g = max(g, x)
	}
	return g
}

// inRing are the live workers that run in the newest generation any live
// worker announces, in slot order.
func (h *chaosHarness) inRing() []*chaosProc {
	ps := h.liveWorkers()
	gens := make([]uint64, len(ps))
	var newest uint64
	for i, p := range ps {
		gens[i] = h.ringGen(p)
		newest = max(newest, gens[i])
	}
	var in []*chaosProc
	for i, p := range ps {
		if gens[i] == newest && newest > 0 {
			in = append(in, p)
		}
	}
	return in
}

// liveWorkers are the workers running now, in slot order.
func (h *chaosHarness) liveWorkers() []*chaosProc {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ps []*chaosProc
	for _, p := range h.slots {
		if p != nil && p.alive() {
			ps = append(ps, p)
		}
	}
	return ps
}

// world is the world size of the newest metrics line, and its step. It
// reads the end of metrics.jsonl only.
func (h *chaosHarness) world() (int, int64) {
	f, err := os.Open(rundir.MetricsPath(h.runDir))
	if err != nil {
		return 0, -1
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, -1
	}
	off := max(0, st.Size()-8192)
	buf := make([]byte, st.Size()-off)
	n, _ := f.ReadAt(buf, off)
	lines := strings.Split(strings.TrimRight(string(buf[:n]), "\n"), "\n")
	for i := len(lines) - 1; i >= 0 && i >= len(lines)-3; i-- {
		ms, _, err := rundir.DecodeMetricsSkipping(strings.NewReader(lines[i] + "\n"))
		if err == nil && len(ms) == 1 {
			return ms[0].Workers, ms[0].Step
		}
	}
	return 0, -1
}

// inject runs the schedule: before each fault it waits for the ring to be
// whole again (at most WholeWait) and for the fault's gap; it stops early when
// the run nears its end, so that the end itself is undisturbed.
func (h *chaosHarness) inject(ctx context.Context, plan []plannedFault) ([]faultResult, error) {
	var results []faultResult
	lastSafe := int64(h.cfg.Steps) * 9 / 10
	// Training under way with every worker.
	if err := h.waitFor(ctx, 2*time.Minute, func() bool { w, s := h.world(); return w == h.cfg.Workers && s >= 20 }); err != nil {
		return nil, fmt.Errorf("the job did not reach step 20 with %d workers: %w", h.cfg.Workers, err)
	}
	for _, f := range plan {
		_ = h.waitFor(ctx, h.cfg.WholeWait, func() bool {
			w, _ := h.world()
			return w == h.cfg.Workers && len(h.inRing()) == h.cfg.Workers
		})
		select {
		case <-time.After(f.Gap):
		case <-ctx.Done():
			return results, ctx.Err()
		}
		h.tail.scan()
		if step := h.tail.lastStep; step >= lastSafe {
			return results, fmt.Errorf("the job reached step %d of %d after %d of %d faults: use more --steps", step, h.cfg.Steps, len(results), len(plan))
		}
		r, err := h.injectOne(ctx, f)
		if err != nil {
			return results, err
		}
		h.log.Info("fault", "index", r.Index, "kind", r.Kind, "target", r.Target, "after_step", r.Step,
			"recovery", r.Recovery.Round(time.Millisecond), "note", r.Note)
		results = append(results, r)
	}
	return results, nil
}

func (h *chaosHarness) waitFor(ctx context.Context, limit time.Duration, ok func() bool) error {
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", limit)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// injectOne injects fault f, measures the time to the next completed step
// and undoes the fault (after the hold) when it is one that lasts.
func (h *chaosHarness) injectOne(ctx context.Context, f plannedFault) (faultResult, error) {
	r := faultResult{Index: f.Index, Kind: f.Kind, Recovery: -1}
	h.tail.scan()
	r.Step = h.tail.lastStep
	r.World, _ = h.world()
	gen := h.tail.lastGen
	// The victim is a worker of the running ring (any live one when the
	// ring is being rebuilt).
	pickLive := func() *chaosProc {
		ps := h.inRing()
		if len(ps) == 0 {
			ps = h.liveWorkers()
		}
		if len(ps) == 0 {
			return nil
		}
		return ps[int(f.Pick)%len(ps)]
	}
	var heal func()
	switch f.Kind {
	case faultKill, faultKillRank0:
		v := pickLive()
		if f.Kind == faultKillRank0 {
			v = h.rankOf(0)
		}
		if v == nil {
			return r, fmt.Errorf("fault %d (%s): no worker to kill", f.Index, f.Kind)
		}
		r.Target, r.At = v.name, time.Now()
		_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
	case faultStop:
		v := pickLive()
		if v == nil {
			return r, fmt.Errorf("fault %d (%s): no worker to stop", f.Index, f.Kind)
		}
		r.Target, r.At = v.name, time.Now()
		_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGSTOP)
		heal = func() { _ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGCONT) }
	case faultCoord:
		h.mu.Lock()
		c := h.coord
		h.mu.Unlock()
		r.Target, r.At = "coordinator", time.Now()
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
		// The workers train on meanwhile; a new coordinator on the same
		// ports rebuilds the run from them (--resume auto).
		time.Sleep(time.Second)
		if err := h.startCoordinator(); err != nil {
			return r, err
		}
	case faultPartition:
		h.mu.Lock()
		v := h.slots[h.cfg.Workers-1]
		h.mu.Unlock()
		if v != nil {
			r.Target = v.name
			if !slices.Contains(h.inRing(), v) {
				r.Note = "the worker was not in the running ring"
			}
		}
		if err := h.netns.drop(ctx); err != nil {
			return r, err
		}
		// The fault begins once the rules are in (starting the iptables
		// commands takes tens of milliseconds, several steps).
		r.At = time.Now()
		h.tail.scan()
		r.Step, gen = h.tail.lastStep, h.tail.lastGen
		heal = func() {
			if err := h.netns.heal(ctx); err != nil {
				h.log.Error("heal the partition", "err", err)
			}
		}
	case faultDiskFull:
		r.Target = "run directory (tmpfs)"
		filler := filepath.Join(h.runDir, ".chaos-filler")
		n, err := fillDisk(filler)
		if err != nil {
			return r, err
		}
		// The fault begins once the disk is full.
		r.At = time.Now()
		h.tail.scan()
		r.Step, gen = h.tail.lastStep, h.tail.lastGen
		r.Note = fmt.Sprintf("filled with %d MiB", n>>20)
		heal = func() { _ = os.Remove(filler) }
	default:
		return r, fmt.Errorf("fault kind %q", f.Kind)
	}
	healAt := r.At.Add(h.cfg.Hold)
	done, ok := h.tail.firstDoneAfter(ctx, r.At, r.Step, gen, time.Minute)
	if ok {
		r.Recovery = done.Sub(r.At)
	} else {
		r.Note = strings.TrimSpace(r.Note + " no step completed within a minute")
	}
	if heal != nil {
		if d := time.Until(healAt); d > 0 {
			time.Sleep(d)
		}
		heal()
	}
	return r, nil
}

// fillDisk writes zeros to path until the file system is full and returns
// how many bytes it wrote.
func fillDisk(path string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, fmt.Errorf("fill the disk: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Write(buf)
		n += int64(k)
		if errors.Is(err, syscall.ENOSPC) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("fill the disk: %w", err)
		}
	}
}

// doneTail follows the workers' sample logs for completed steps.
type doneTail struct {
	dir      string
	offsets  map[string]int64
	lastStep int64  // the newest step completed
	lastGen  uint64 // the newest generation that completed a step
	// dones are the completions read since the last firstDoneAfter.
	dones []worker.SampleRecord
}

// scan reads the records appended since the last scan.
func (d *doneTail) scan() {
	paths, _ := filepath.Glob(filepath.Join(d.dir, "*.samples.jsonl"))
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		off := d.offsets[p]
		st, err := f.Stat()
		if err != nil || st.Size() <= off {
			f.Close()
			continue
		}
		buf := make([]byte, st.Size()-off)
		n, _ := f.ReadAt(buf, off)
		f.Close()
		buf = buf[:n]
		end := strings.LastIndexByte(string(buf), '\n')
		if end < 0 {
			continue
		}
		d.offsets[p] = off + int64(end) + 1
		for _, line := range strings.Split(string(buf[:end]), "\n") {
			if !strings.Contains(line, `"event":"done"`) {
				continue
			}
			var r worker.SampleRecord
			if json.Unmarshal([]byte(line), &r) != nil {
				continue
			}
			d.lastStep, d.lastGen = max(d.lastStep, r.Step), max(d.lastGen, r.Generation)
			d.dones = append(d.dones, r)
		}
	}
}

// firstDoneAfter waits up to limit for the first completion, after t, of
// a step that had not begun at t: one after step+1 (step is the newest
// step completed at t, step+1 the one in flight, which may complete just
// after t, its data already sent), or any step of a generation newer
// than gen (the step in flight, run again). It returns the earliest.
func (d *doneTail) firstDoneAfter(ctx context.Context, t time.Time, step int64, gen uint64, limit time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(limit)
	d.dones = d.dones[:0]
	earliest := func() time.Time {
		var best time.Time
		for _, r := range d.dones {
			x := time.Unix(0, r.UnixNano)
			if x.After(t) && (r.Step > step+1 || r.Generation > gen) && (best.IsZero() || x.Before(best)) {
				best = x
			}
		}
		return best
	}
	for {
		d.scan()
		if best := earliest(); !best.IsZero() {
			// Give the other logs a moment: a completion written a
			// little later may be earlier.
			time.Sleep(50 * time.Millisecond)
			d.scan()
			return earliest(), true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return time.Time{}, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// check fills the report's verdict: the job finished, every batch was
// applied once (package lineage), the final loss is within 1 % of the
// undisturbed run's.
func (h *chaosHarness) check(rep *chaosReport, refLoss float64) {
	problem := func(format string, args ...any) { rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...)) }
	if len(rep.Results) < h.cfg.Faults {
		problem("%d of %d faults injected", len(rep.Results), h.cfg.Faults)
	}
	rep.Recovery = statsOf(rep.Results)
	for k, rs := range byKind(rep.Results) {
		rep.ByKind[k] = statsOf(rs)
	}
	for _, r := range rep.Results {
		if r.Recovery < 0 {
			problem("fault %d (%s of %s): no step completed after it", r.Index, r.Kind, r.Target)
		}
	}
	sum, err := rundir.ReadSummary(h.runDir)
	if err != nil {
		problem("summary.json: %v (the job did not finish)", err)
	} else {
		rep.Finished = sum.Steps == int64(h.cfg.Steps)
		if !rep.Finished {
			problem("summary.json: %d steps, want %d", sum.Steps, h.cfg.Steps)
		}
		rep.FinalLoss, rep.RefLoss = float64(sum.FinalLoss), refLoss
		rep.LossRelDiff = math.Abs(rep.FinalLoss-refLoss) / math.Abs(refLoss)
		if !(rep.LossRelDiff <= 0.01) {
			problem("final loss %.6f, the undisturbed run's %.6f: %.3g%% apart, over 1%%", rep.FinalLoss, refLoss, 100*rep.LossRelDiff)
		}
	}
	samples, err := lineage.ReadSampleLogs(h.logs)
	if err != nil {
		problem("%v", err)
		return
	}
	ms, _, err := rundir.ReadMetricsSkipping(h.runDir)
	if err != nil {
		problem("metrics.jsonl: %v", err)
	}
	// A full disk kills each rank 0 in turn (its metrics line or its
	// checkpoint cannot be written); when every worker holding the newest
	// state is gone the run goes back to the latest checkpoint, which is
	// no split brain as long as the generations do not overlap in time.
	lin := lineage.Check(samples, ms, lineage.Run{Steps: h.cfg.Steps, Batch: h.cfg.Batch, N: h.cfg.NTrain, Rollbacks: true})
	rep.Generations, rep.Lost, rep.Repeated = lin.Generations, lin.Lost, lin.Repeated
	type genStep struct {
		gen  uint64
		step int64
	}
	completions, steps := map[genStep]bool{}, map[int64]bool{}
	for _, r := range samples {
		if r.Event == "done" {
			completions[genStep{r.Generation, r.Step}] = true
			steps[r.Step] = true
		}
	}
	rep.Redone = len(completions) - len(steps)
	const most = 20
	for i, p := range lin.Problems {
		if i == most {
			problem("... and %d more lineage problems", len(lin.Problems)-most)
			break
		}
		problem("lineage: %s", p)
	}
}

// print writes the report for people.
func (h *chaosHarness) print(rep *chaosReport) {
	w := h.stdout
	c := rep.Config
	fmt.Fprintf(w, "chaos: %d workers, %d steps (global batch %d, %d samples an epoch), seed %d, %d faults (hold %v, gaps %v to %v)\n",
		c.Workers, c.Steps, c.Batch, c.NTrain, c.Seed, len(rep.Results), c.Hold, c.GapMin, c.GapMax)
	kinds := make([]string, 0, len(c.Skipped))
	for k := range c.Skipped {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(w, "  kind %s skipped: %s\n", k, c.Skipped[faultKind(k)])
	}
	fmt.Fprintf(w, "\n  #  kind          target                 after step  world  to next step\n")
	for _, r := range rep.Results {
		rec := "none"
		if r.Recovery >= 0 {
			rec = r.Recovery.Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "%3d  %-12s  %-21s  %10d  %5d  %s %s\n", r.Index, r.Kind, r.Target, r.Step, r.World, rec, r.Note)
	}
	fmt.Fprintf(w, "\nfault to the next completed step, by kind (median / max):\n")
	for _, k := range allFaultKinds {
		if s, ok := rep.ByKind[k]; ok {
			fmt.Fprintf(w, "  %-12s %2d faults  %8v / %v\n", k, s.N, s.Median.Round(time.Millisecond), s.Max.Round(time.Millisecond))
		}
	}
	fmt.Fprintf(w, "  %-12s %2d faults  %8v / %v\n", "all", rep.Recovery.N, rep.Recovery.Median.Round(time.Millisecond), rep.Recovery.Max.Round(time.Millisecond))
	fmt.Fprintf(w, "\nworkers restarted %d, generations %d, steps redone %d (completed in a generation whose state was abandoned), samples lost %d, applied twice %d\n",
		rep.Restarts, rep.Generations, rep.Redone, rep.Lost, rep.Repeated)
	fmt.Fprintf(w, "final loss %.6f, undisturbed run %.6f (%.3g%% apart); finished %v; wall %v\n",
		rep.FinalLoss, rep.RefLoss, 100*rep.LossRelDiff, rep.Finished, rep.Wall.Round(time.Second))
	if len(rep.Problems) == 0 {
		fmt.Fprintf(w, "PASS: the job finished, every global batch of every epoch reached the parameters exactly once\n")
		return
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "FAIL: %s\n", p)
	}
}

func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/internal/testcluster"
	"github.com/infonce/infonce/rundir"
	"github.com/infonce/infonce/worker"
)

// TestJoin adds a worker to a running job (MaxWorkers 3): it is admitted
// at a step boundary, receives the state by broadcast, the run goes on with
// three workers, and every loss equals the uninterrupted run's. The
// throughput before and after is measured and reported.
func TestJoin(t *testing.T) {
	needSetup(t)
	// Long enough that the joiner arrives before the end: two workers of
	// the test's small model run about 600 steps a second here.
	const steps = 1000
	ref := referenceRun(t, steps)
	c := newCluster(t, clusterOpts{workers: 2, min: 2, max: 3, steps: steps})
	c.AddWorker(nil)
	c.AddWorker(nil)
	c.WaitStep(30, 90*time.Second)
	joinAt := time.Now()
	joiner := c.AddWorker(nil)
	m, ok := c.FirstStepAfter(1, 60*time.Second)
	if !ok {
		c.Dump()
		t.Fatal("the joiner was not admitted")
	}
	admitted := unixTime(m.Time).Sub(joinAt)
	c.WaitDone(3 * time.Minute)
	if !regexp.MustCompile(`admitted \S+ at the boundary before step \d+`).MatchString(c.Coord.Output()) {
		t.Error("the coordinator did not admit the joiner at a step boundary")
	}
	if !strings.Contains(joiner.Output(), `start="broadcast from rank 0"`) {
		t.Error("the joiner did not start from a broadcast")
	}
	if m.Workers != 3 {
		t.Errorf("world %d after the join, want 3", m.Workers)
	}
	worst := compareLosses(t, c.Dir, c.Out, ref, 1e-4, nil)
	lineage(t, c.Dir, c.Out, steps, ref.batch, nil)
	// Throughput before the join and after it, from metrics.jsonl's clock.
	ms := rundir.LastWins(testcluster.ReadMetrics(t, c.Out))
	rate := func(from, to int64) float64 {
		a, b := ms[from], ms[to]
		return float64((to-from)*batch) / (b.Time - a.Time)
	}
	before := rate(5, m.Step-1)
	after := rate(min(m.Step+5, steps-2), steps-1)
	t.Logf("FIGURE join: admitted %v after the joiner started (before step %d, generation %d, world %d); %.0f samples/s with two workers, %.0f with three (%.2fx, %d CPUs); worst |Δloss| %.2g",
		admitted.Round(time.Millisecond), m.Step, m.Generation, m.Workers, before, after, after/before, runtime.NumCPU(), worst)
}

// cpuTime is the CPU time a process has used so far (Linux /proc).
func cpuTime(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, false
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100), true // USER_HZ = 100
}

// TestTooFewWorkers kills one of two workers when MinWorkers is 2: the run
// pauses (the survivor waits, alive and idle), and when no replacement
// comes within --rendezvous-timeout the survivor writes a checkpoint and
// every process exits cleanly.
func TestTooFewWorkers(t *testing.T) {
	needSetup(t)
	const timeout = 3 * time.Second
	c := newCluster(t, clusterOpts{workers: 2, min: 2, steps: 5000, coordArgs: []string{"--rendezvous-timeout", timeout.String()}})
	a, b := c.AddWorker(nil), c.AddWorker(nil)
	last := c.WaitStep(30, 90*time.Second)
	victim, survivor := a, b
	if p, _ := c.RankOf(0); p == b {
		victim, survivor = b, a
	}
	killAt := time.Now()
	victim.Kill()
	// The pause: the survivor stays alive without spinning.
	time.Sleep(timeout / 3)
	c0, ok0 := cpuTime(survivor.Pid())
	time.Sleep(timeout / 3)
	c1, ok1 := cpuTime(survivor.Pid())
	if !survivor.Alive() {
		c.Dump()
		t.Fatal("the survivor exited during the pause")
	}
	if !strings.Contains(c.Coord.Output(), "action=pause") {
		t.Error("the coordinator did not pause the run")
	}
	var busy float64
	if ok0 && ok1 {
		busy = float64(c1-c0) / float64(timeout/3)
		if busy > 0.2 {
			t.Errorf("the paused worker used %.0f%% of a core", 100*busy)
		}
	}
	if err := survivor.Wait(t, timeout+20*time.Second); err != nil {
		c.Dump()
		t.Fatalf("the survivor: %v", err)
	}
	stoppedAfter := time.Since(killAt)
	if err := c.Coord.Wait(t, 20*time.Second); err != nil {
		c.Dump()
		t.Fatalf("the coordinator: %v", err)
	}
	if stoppedAfter < timeout {
		t.Errorf("stopped %v after the kill, before the rendezvous timeout %v", stoppedAfter, timeout)
	}
	ck, err := (&checkpoint.Store{Root: worker.CheckpointDir(c.Out)}).LoadLatest(context.Background())
	if err != nil {
		c.Dump()
		t.Fatalf("no checkpoint after the stop: %v", err)
	}
	final := testcluster.ReadMetrics(t, c.Out)
	lastStep := final[len(final)-1].Step
	if ck.Manifest.Step < lastStep {
		t.Errorf("checkpoint of step %d, but step %d had completed", ck.Manifest.Step, lastStep)
	}
	t.Logf("FIGURE too-few: paused at step %d, worker CPU during the pause %.1f%% of a core, stopped %v after the kill (timeout %v), checkpoint at step %d (last completed step %d)",
		last.Step, 100*busy, stoppedAfter.Round(time.Millisecond), timeout, ck.Manifest.Step, lastStep+1)
}

// TestCoordinatorRestart kills the coordinator with SIGKILL and starts it
// again on the same ports: the workers keep their state and go on training,
// re-join the new coordinator, which opens a generation above theirs from
// the most advanced state they hold; the run finishes with the losses of
// the uninterrupted run and no step lost beyond the one in flight.
func TestCoordinatorRestart(t *testing.T) {
	needSetup(t)
	// Long enough to outlast the coordinator's absence: three workers of
	// the test's small model run about 500 steps a second here.
	const steps = 5000
	ref := referenceRun(t, steps)
	c := newCluster(t, clusterOpts{workers: 3, steps: steps})
	for range 3 {
		c.AddWorker(nil)
	}
	c.WaitStep(40, 90*time.Second)
	c.Coord.Kill()
	killed := time.Now()
	before := testcluster.ReadMetrics(t, c.Out)
	time.Sleep(1500 * time.Millisecond)
	during := testcluster.ReadMetrics(t, c.Out)
	restart := time.Now()
	c.StartCoordinator([]string{"--resume", "auto"})
	gen := before[len(before)-1].Generation
	m, ok := c.FirstStepAfter(gen, 30*time.Second)
	if !ok {
		c.Dump()
		t.Fatal("no step in a new generation within 30s of the restart")
	}
	c.WaitDone(3 * time.Minute)
	worst := compareLosses(t, c.Dir, c.Out, ref, 1e-4, nil)
	lineage(t, c.Dir, c.Out, steps, ref.batch, nil)
	lastOld := int64(-1)
	for _, x := range testcluster.ReadMetrics(t, c.Out) {
		if x.Generation <= gen && x.Step > lastOld {
			lastOld = x.Step
		}
	}
	redone := max(0, lastOld-m.Step+1)
	t.Logf("FIGURE coordinator-restart: %d steps trained while the coordinator was down (%v), new generation %d (world %d) %v after the restart at step %d, steps redone %d, worst |Δloss| %.2g",
		during[len(during)-1].Step-before[len(before)-1].Step, restart.Sub(killed).Round(time.Millisecond),
		m.Generation, m.Workers, unixTime(m.Time).Sub(restart).Round(time.Millisecond), m.Step, redone, worst)
	if redone > 1 {
		t.Errorf("%d steps redone after the restart, want at most the one in flight", redone)
	}
	if trained := during[len(during)-1].Step - before[len(before)-1].Step; trained <= 0 {
		t.Errorf("%d steps trained in the %v the coordinator was down, want training to go on without it", trained, restart.Sub(killed).Round(time.Millisecond))
	}
	if m.Workers != 3 {
		t.Errorf("world %d after the restart, want 3", m.Workers)
	}
	if !strings.Contains(c.Coord.Output(), "held=") && !strings.Contains(c.Coord.Output(), "broadcast from rank") {
		t.Error("the new generation did not start from the workers' state")
	}
}

// runRound is one run of `infonce train --workers 2` in its own process
// group.
func runRound(t *testing.T, dir, name string, args ...string) *proc {
	return start(t, dir, name, nil, args...)
}

// TestCrashDuringCheckpoint kills a training run (coordinator and workers,
// the whole process group) with SIGKILL at random moments while rank 0
// saves a checkpoint after every step, many times. Every round waits for a
// checkpoint newer than the last round's before it kills, and a round whose
// run ended before the kill fails the test. After every kill the latest
// checkpoint must load, and the next run must resume from it; at least one
// kill must have cut a save short (a .tmp-* directory left behind), or the
// test proved nothing about crashes during a save; the last run finishes
// with the losses of an uninterrupted run.
func TestCrashDuringCheckpoint(t *testing.T) {
	needSetup(t)
	const steps, rounds = 1200, 10 // enough steps that ten rounds never reach the end
	ref := referenceRun(t, steps)
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	args := append([]string{"train", "--workers", "2", "--no-eval", "--checkpoint-every", "1", "--resume", "auto"}, trainArgs(out, steps)...)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := newRand(seed)
	store := &checkpoint.Store{Root: worker.CheckpointDir(out)}
	prev, interrupted := int64(-1), 0
	for round := range rounds {
		p := runRound(t, dir, "round"+strconv.Itoa(round), args...)
		// Wait for training (a checkpoint newer than the last round's: List
		// is newest first), then a random moment.
		deadline := time.Now().Add(60 * time.Second)
		fresh := false
		for !fresh && time.Now().Before(deadline) && p.Alive() {
			if c, err := store.List(); err == nil && len(c) > 0 {
				if m, err := checkpoint.Inspect(c[0]); err == nil && m.Step > prev {
					fresh = true
					break
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !fresh {
			t.Fatalf("round %d: no checkpoint newer than step %d within 60s (the run alive: %v):\n%s", round, prev, p.Alive(), testcluster.Tail(p.Output(), 20))
		}
		time.Sleep(time.Duration(rnd.IntN(400)) * time.Millisecond)
		if !p.Alive() {
			t.Fatalf("round %d: the run ended before the kill (%v): the test would prove nothing; lower the rounds' wait or raise the steps:\n%s",
				round, p.Err(), testcluster.Tail(p.Output(), 20))
		}
		_ = p.KillGroup()
		<-p.Done()
		if !p.KilledByTest() {
			t.Fatalf("round %d: the run ended by itself (%v), not by the kill", round, p.Err())
		}
		if tmp, _ := filepath.Glob(filepath.Join(worker.CheckpointDir(out), ".tmp-*")); len(tmp) > 0 {
			interrupted++
		}
		c, err := store.LoadLatest(context.Background())
		if err != nil {
			t.Fatalf("round %d: the latest checkpoint does not load after the kill: %v", round, err)
		}
		if c.Manifest.Step < prev {
			t.Fatalf("round %d: latest checkpoint at step %d, older than the last round's %d", round, c.Manifest.Step, prev)
		}
		if !strings.Contains(p.Output(), "checkpoint") && round > 0 {
			t.Logf("round %d output:\n%s", round, testcluster.Tail(p.Output(), 10))
		}
		prev = c.Manifest.Step
		t.Logf("round %d: killed; latest good checkpoint at step %d", round, prev)
	}
	p := runRound(t, dir, "final", args...)
	if err := p.Wait(t, 3*time.Minute); err != nil {
		t.Fatalf("the final run: %v\n%s", err, testcluster.Tail(p.Output(), 30))
	}
	if !strings.Contains(p.Output(), "resum") && !strings.Contains(p.Output(), `start="checkpoint `) {
		t.Error("the final run did not resume from a checkpoint")
	}
	worst := compareLosses(t, "", out, ref, 1e-4, nil)
	if interrupted == 0 {
		t.Errorf("none of the %d kills interrupted a save (no .tmp-* directory left): the crash during a checkpoint write was not tested", rounds)
	}
	// Every round resumed the same run: its checkpoints and its summary
	// name one run id.
	sum, err := rundir.ReadSummary(out)
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := store.List()
	if err != nil || len(dirs) == 0 {
		t.Fatalf("checkpoints after the final run: %v, %v", dirs, err)
	}
	for _, d := range dirs {
		if m, err := checkpoint.Inspect(d); err != nil || m.RunID == "" || m.RunID != sum.RunID {
			t.Errorf("%s names run %q (%v), the summary run %q", d, m.RunID, err, sum.RunID)
		}
	}
	t.Logf("FIGURE crash-checkpoint: %d kills, %d left an interrupted save behind, every latest checkpoint loaded, final run resumed at step %d, worst |Δloss| %.2g",
		rounds, interrupted, prev, worst)
}

// TestStopWhilePaused kills one of two workers when MinWorkers is 2 and
// then asks the paused survivor to stop (SIGTERM, as Ctrl-C of a launch
// script does): it leaves at once, long before the rendezvous timeout, and
// saves the state it holds.
func TestStopWhilePaused(t *testing.T) {
	needSetup(t)
	const timeout = 5 * time.Minute
	c := newCluster(t, clusterOpts{workers: 2, min: 2, steps: 5000, coordArgs: []string{"--rendezvous-timeout", timeout.String()}})
	a, b := c.AddWorker(nil), c.AddWorker(nil)
	c.WaitStep(20, 90*time.Second)
	victim, survivor := a, b
	if p, _ := c.RankOf(0); p == b {
		victim, survivor = b, a
	}
	victim.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(c.Coord.Output(), "action=pause") {
		if time.Now().After(deadline) {
			c.Dump()
			t.Fatal("the coordinator did not pause the run")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the survivor takes the pause in
	stopAt := time.Now()
	_ = survivor.Signal(syscall.SIGTERM)
	err := survivor.Wait(t, 20*time.Second)
	stoppedAfter := time.Since(stopAt)
	if err != nil && !strings.Contains(survivor.Output(), "stopping on request") {
		c.Dump()
		t.Fatalf("the survivor: %v", err)
	}
	ck, err := (&checkpoint.Store{Root: worker.CheckpointDir(c.Out)}).LoadLatest(context.Background())
	if err != nil {
		c.Dump()
		t.Fatalf("no checkpoint after the stop: %v", err)
	}
	final := testcluster.ReadMetrics(t, c.Out)
	if last := final[len(final)-1].Step; ck.Manifest.Step < last {
		t.Errorf("checkpoint of step %d, but step %d had completed", ck.Manifest.Step, last)
	}
	t.Logf("FIGURE stop-while-paused: stopped %v after SIGTERM, checkpoint at step %d", stoppedAfter.Round(time.Millisecond), ck.Manifest.Step)
}

// TestJoinSpeedsUp starts a run of the default model on one worker pinned
// to core 0 (MaxWorkers 2) and adds a second worker pinned to core 1: the
// joiner is admitted, and the run goes faster than before, measured on
// metrics.jsonl's clock.
//
// The test command runs packages side by side, so another package's
// processes may hold core 0 or 1. A try in which a worker waited on a run
// queue for more than a tenth of a measured window did not get its core;
// it passes if it is fast enough anyway but does not count against the
// speed-up. The test fails when two tries that had their cores fall short,
// and skips, saying so, when no two such tries happened in five.
func TestJoinSpeedsUp(t *testing.T) {
	needSetup(t)
	if runtime.NumCPU() < 2 || runtime.GOOS != "linux" {
		t.Skip("needs two cores to pin two workers to (Linux)")
	}
	if _, err := procRunWait(os.Getpid()); err != nil {
		t.Skipf("cannot tell whether the workers had their cores: %v", err)
	}
	const want, maxWait = 1.1, 0.1
	var figures []string
	short := 0
	for try := 1; try <= 5 && short < 2; try++ {
		r := joinSpeedup(t)
		contended := r.wait > maxWait
		figures = append(figures, fmt.Sprintf("%.0f → %.0f samples/s (%.2fx, joined before step %d, run-queue wait %.0f%%)",
			r.before, r.after, r.after/r.before, r.step, 100*r.wait))
		if r.after >= want*r.before {
			t.Logf("FIGURE join speed-up: %s", strings.Join(figures, "; "))
			return
		}
		if !contended {
			short++
		}
	}
	if short >= 2 {
		t.Errorf("two workers were not %.1fx faster than one in two tries that had their cores: %s", want, strings.Join(figures, "; "))
		return
	}
	t.Skipf("other processes held the workers' cores (run-queue wait above %.0f%% of a window) in all but %d of the tries: %s",
		100*maxWait, short, strings.Join(figures, "; "))
}

// joinResult is one try of TestJoinSpeedsUp: the throughput of one worker
// and of two, the step of the join, and the largest share of a measured
// window that a worker spent waiting for its core.
type joinResult struct {
	before, after float64
	step          int64
	wait          float64
}

// joinSpeedup runs the scenario of TestJoinSpeedsUp once.
func joinSpeedup(t *testing.T) joinResult {
	const steps, B = 400, 512
	meter := startRunWaitMeter()
	defer meter.close()
	c := newCluster(t, clusterOpts{workers: 1, min: 1, max: 2, steps: steps, coordArgs: []string{
		"--batch", strconv.Itoa(B), "--hidden", "512,256", "--text-hidden", "256", "--dim", "64", "--activation", "relu", "--checksum-every", "0"}})
	first := c.AddWorkerWith(testcluster.WorkerOptions{CPUs: []int{0}}) // GOMAXPROCS=1, as every worker of the harness
	meter.watch(first.Pid())
	c.WaitStep(100, 90*time.Second)
	joiner := c.AddWorkerWith(testcluster.WorkerOptions{CPUs: []int{1}})
	meter.watch(joiner.Pid())
	m, ok := c.FirstStepAfter(1, 60*time.Second)
	if !ok {
		c.Dump()
		t.Fatal("the joiner was not admitted")
	}
	c.WaitDone(3 * time.Minute)
	if m.Workers != 2 {
		t.Fatalf("world %d after the join, want 2", m.Workers)
	}
	ms := rundir.LastWins(testcluster.ReadMetrics(t, c.Out))
	if m.Step < 30 || m.Step > steps-60 {
		t.Fatalf("joined before step %d: too late to measure", m.Step)
	}
	r := joinResult{step: m.Step}
	window := func(from, to int64, pids ...int) float64 {
		a, b := ms[from], ms[to]
		for _, pid := range pids {
			w, ok := meter.share(pid, unixTime(a.Time), unixTime(b.Time))
			if !ok {
				w = 1 // unknown counts as not having had the core
			}
			r.wait = max(r.wait, w)
		}
		return float64((to-from)*B) / (b.Time - a.Time)
	}
	r.before = window(10, m.Step-1, first.Pid())
	r.after = window(m.Step+10, steps-1, first.Pid(), joiner.Pid())
	return r
}

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/internal/affinity"
	"github.com/infonce/infonce/worker"
)

// Shared by every test: the binary and the data set.
var (
	binary   string // the infonce binary built by TestMain
	dataDir  string // the idx data set
	setupErr error
)

// The data set and the model of every test: 1280 training samples in
// global batches of 128, ten steps per epoch.
const (
	nTrain        = 1280
	nTest         = 256
	batch         = 128
	stepsPerEpoch = nTrain / batch
)

func TestMain(m *testing.M) {
	flagShort := false
	for _, a := range os.Args[1:] {
		if a == "-test.short=true" || a == "-test.short" {
			flagShort = true
		}
	}
	dir, err := os.MkdirTemp("", "infonce-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	if !flagShort {
		setupErr = setup(dir)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// setup builds the binary, with the faultinject tag so that it reads the
// fault variables (worker.EnvFaultNaNSteps and the others), and writes the
// data set into dir.
func setup(dir string) error {
	binary = filepath.Join(dir, "infonce")
	build := exec.Command("go", "build", "-tags", "faultinject", "-o", binary, "github.com/infonce/infonce/cmd/infonce")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	set, err := dataset.MNIST()
	if err != nil {
		return err
	}
	dataDir = filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	write := func(name string, dims []int, data []byte) error {
		var b bytes.Buffer
		if err := dataset.WriteIDX(&b, dims, data); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dataDir, name), b.Bytes(), 0o644)
	}
	P := set.Train.H * set.Train.W
	for _, f := range []struct {
		name string
		dims []int
		data []byte
	}{
		{"train-images-idx3-ubyte", []int{nTrain, set.Train.H, set.Train.W}, set.Train.Pixels[:nTrain*P]},
		{"train-labels-idx1-ubyte", []int{nTrain}, set.Train.Labels[:nTrain]},
		{"t10k-images-idx3-ubyte", []int{nTest, set.Test.H, set.Test.W}, set.Test.Pixels[:nTest*P]},
		{"t10k-labels-idx1-ubyte", []int{nTest}, set.Test.Labels[:nTest]},
	} {
		if err := write(f.name, f.dims, f.data); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dataDir, "classes.txt"), []byte(strings.Join(set.Classes, "\n")+"\n"), 0o644)
}

// needSetup skips a test in -short mode and fails it when setup failed.
func needSetup(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: starts several infonce processes; skipped in -short mode")
	}
	if setupErr != nil {
		t.Fatalf("setup: %v", setupErr)
	}
}

// trainArgs are the training flags every test shares. The activation is
// GELU: a run on another number of workers sums its gradients in another
// order, and over hundreds of steps a ReLU pre-activation that rounding puts
// on the other side of zero sends the two runs on different (equally
// valid) paths; with a smooth activation the loss curves stay within 1e-4,
// so a recovery that changed the sample sequence or the state would show.
// The per-step invariant with ReLU is tested in worker/invariance_test.go.
func trainArgs(out string, steps int) []string {
	return []string{"--data", "idx:" + dataDir, "--batch", strconv.Itoa(batch), "--hidden", "64", "--text-hidden", "32",
		"--dim", "16", "--activation", "gelu", "--steps", strconv.Itoa(steps), "--log-every", "1", "--checksum-every", "5", "--out", out}
}

// proc is one process of the binary.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string // its stderr and stdout
	done chan struct{}
	err  error // its exit, once done is closed
}

// start runs the binary with args; its output goes to dir/name.log.
func start(t *testing.T, dir, name string, env []string, args ...string) *proc {
	t.Helper()
	return startAs(t, dir, name, 0, env, args...)
}

// startAs is start as user uid (0: as the test).
func startAs(t *testing.T, dir, name string, uid uint32, env []string, args ...string) *proc {
	t.Helper()
	return startOn(t, dir, name, uid, nil, env, args...)
}

// startOn is startAs on the cores cpus (nil: any).
func startOn(t *testing.T, dir, name string, uid uint32, cpus []int, env []string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(append(os.Environ(), "GOMAXPROCS=1"), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if uid != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: uid}
	}
	if err := affinity.Start(cmd, cpus); err != nil {
		f.Close()
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// wait waits up to d for the process to exit.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("%s did not exit within %v; its log:\n%s", p.name, d, tail(p.output(), 40))
		return nil
	}
}

func (p *proc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cluster is a coordinator and its workers.
type cluster struct {
	t       *testing.T
	dir     string // logs, sample logs
	out     string // the run's --out
	steps   int
	coord   *proc
	addr    string
	gossip  string
	workers map[string]*proc
	n       int // workers started
	opts    clusterOpts
}

type clusterOpts struct {
	workers, min, max int
	steps             int
	coordArgs         []string // extra coordinator flags
	workerArgs        []string // extra worker flags
}

var listenRE = regexp.MustCompile(`coordinator listening on (\S+) \(gossip (\S*)\)`)

// newCluster starts a coordinator; workers are added with addWorker.
func newCluster(t *testing.T, o clusterOpts) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{t: t, dir: dir, out: filepath.Join(dir, "run"), steps: o.steps, workers: map[string]*proc{}, opts: o}
	c.startCoordinator(nil)
	return c
}

// startCoordinator starts (or restarts) the coordinator on the previous
// ports, if any.
func (c *cluster) startCoordinator(extra []string) {
	t := c.t
	args := append([]string{"coordinator", "--workers", strconv.Itoa(c.opts.workers)}, trainArgs(c.out, c.steps)...)
	if c.opts.min > 0 {
		args = append(args, "--min-workers", strconv.Itoa(c.opts.min))
	}
	if c.opts.max > 0 {
		args = append(args, "--max-workers", strconv.Itoa(c.opts.max))
	}
	if c.addr != "" {
		_, port, _ := strings.Cut(c.addr, ":")
		_, gport, _ := strings.Cut(c.gossip, ":")
		args = append(args, "--port", port, "--gossip-port", gport)
	}
	args = append(append(args, c.opts.coordArgs...), extra...)
	c.coord = start(t, c.dir, "coordinator", nil, args...)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := listenRE.FindStringSubmatch(c.coord.output()); m != nil {
			// A restart appends to the same log: take the last match.
			all := listenRE.FindAllStringSubmatch(c.coord.output(), -1)
			m = all[len(all)-1]
			c.addr, c.gossip = m[1], m[2]
			return
		}
		if !c.coord.alive() {
			t.Fatalf("coordinator exited: %v\n%s", c.coord.err, tail(c.coord.output(), 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("coordinator did not listen within 20s:\n%s", tail(c.coord.output(), 30))
}

// addWorker starts a worker with its own sample log.
func (c *cluster) addWorker(env []string, extra ...string) *proc {
	return c.addWorkerAs(0, env, extra...)
}

// addWorkerAs starts a worker as user uid (0: as the test).
func (c *cluster) addWorkerAs(uid uint32, env []string, extra ...string) *proc {
	return c.addWorkerOn(uid, nil, env, extra...)
}

// addWorkerOn starts a worker as user uid on the cores cpus (nil: any).
func (c *cluster) addWorkerOn(uid uint32, cpus []int, env []string, extra ...string) *proc {
	c.n++
	name := fmt.Sprintf("worker%d", c.n)
	env = append([]string{worker.EnvSampleLog + "=" + filepath.Join(c.dir, name+".samples.jsonl")}, env...)
	args := append([]string{"worker", "--coordinator", c.addr, "--name", name, "--no-eval", "--op-timeout", "3s"}, c.opts.workerArgs...)
	args = append(args, extra...)
	p := startOn(c.t, c.dir, name, uid, cpus, env, args...)
	c.workers[name] = p
	return p
}

// dump logs the tails of every process's output (on failure).
func (c *cluster) dump() {
	c.t.Helper()
	c.t.Logf("coordinator:\n%s", tail(c.coord.output(), 40))
	names := make([]string, 0, len(c.workers))
	for n := range c.workers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c.t.Logf("%s:\n%s", n, tail(c.workers[n].output(), 25))
	}
}

// waitDone waits for every process to exit and fails the test when one
// failed.
func (c *cluster) waitDone(d time.Duration, allowFail ...string) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	ps := []*proc{c.coord}
	for _, p := range c.workers {
		ps = append(ps, p)
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-time.After(time.Until(deadline)):
			c.dump()
			c.t.Fatalf("%s still running after %v", p.name, d)
		}
		ok := p.err == nil
		for _, a := range allowFail {
			if a == p.name {
				ok = true
			}
		}
		if !ok {
			if ee, isExit := p.err.(*exec.ExitError); isExit && ee.ProcessState.String() == "signal: killed" {
				continue // killed by the test
			}
			c.dump()
			c.t.Fatalf("%s: %v", p.name, p.err)
		}
	}
}

// metric is a line of metrics.jsonl.
type metric struct {
	Step       int64   `json:"step"`
	Loss       float64 `json:"loss"`
	Time       float64 `json:"time"`
	Workers    int     `json:"workers"`
	Generation uint64  `json:"generation"`
	SPS        float64 `json:"samples_per_second"`
}

// readMetrics returns the metrics lines in file order.
func readMetrics(t *testing.T, out string) []metric {
	t.Helper()
	f, err := os.Open(filepath.Join(out, "metrics.jsonl"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ms []metric
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m metric
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			ms = append(ms, m)
		}
	}
	return ms
}

// lastWins maps each step to its last metrics line (a step that ran again
// after a failure logs twice).
func lastWins(ms []metric) map[int64]metric {
	out := map[int64]metric{}
	for _, m := range ms {
		out[m.Step] = m
	}
	return out
}

// stopGracefully asks every worker to stop (SIGTERM: the request rides in
// the next step's reduction, rank 0 saves, all exit), then the coordinator.
func (c *cluster) stopGracefully(d time.Duration) {
	c.t.Helper()
	for _, p := range c.workers {
		if p.alive() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range c.workers {
		select {
		case <-p.done:
		case <-time.After(d):
			c.dump()
			c.t.Fatalf("%s did not stop within %v of SIGTERM", p.name, d)
		}
	}
	_ = c.coord.cmd.Process.Signal(syscall.SIGTERM)
}

// waitMetrics waits until metrics.jsonl has a line for step or later.
func (c *cluster) waitStep(step int64, d time.Duration) metric {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ms := readMetrics(c.t, c.out)
		if len(ms) > 0 && ms[len(ms)-1].Step >= step {
			return ms[len(ms)-1]
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.dump()
	c.t.Fatalf("no step %d within %v", step, d)
	return metric{}
}

// readSamples reads every worker's sample log.
func readSamples(t *testing.T, dir string) []worker.SampleRecord {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "*.samples.jsonl"))
	var recs []worker.SampleRecord
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			var r worker.SampleRecord
			if json.Unmarshal([]byte(line), &r) == nil && r.Event != "" {
				recs = append(recs, r)
			}
		}
	}
	return recs
}

// lineage checks the run's record: every step 0..steps-1 completed in the
// final lineage (metrics.jsonl, last line of a step winning) except the
// skipped ones; the generation that completed a step had every one of its
// ranks contribute to it, with disjoint rows making up one global batch
// equal to the reference's; every epoch saw every sample exactly once; and
// no generation completed a step past the first step of a later generation
// (no two generations made progress at once). It returns the number of
// samples skipped or repeated (0 when the checks pass).
func lineage(t *testing.T, dir, out string, steps int, ref map[int64][]int, skipped map[int64]bool) {
	t.Helper()
	lineageB(t, dir, out, steps, batch, ref, skipped)
}

// lineageB is lineage for a global batch of B.
func lineageB(t *testing.T, dir, out string, steps, batch int, ref map[int64][]int, skipped map[int64]bool) {
	stepsPerEpoch := nTrain / batch
	t.Helper()
	recs := readSamples(t, dir)
	final := lastWins(readMetrics(t, out))
	doneGen := completedGens(t, dir)
	type key struct {
		gen  uint64
		step int64
	}
	contrib := map[key]map[int][]int{}
	world := map[uint64]int{}
	doneMin, doneMax := map[uint64]int64{}, map[uint64]int64{}
	for _, r := range recs {
		switch r.Event {
		case "contribute":
			k := key{r.Generation, r.Step}
			if contrib[k] == nil {
				contrib[k] = map[int][]int{}
			}
			contrib[k][r.Rank] = r.Indices
			world[r.Generation] = r.World
		case "done", "skipped":
			if v, ok := doneMin[r.Generation]; !ok || r.Step < v {
				doneMin[r.Generation] = r.Step
			}
			if v, ok := doneMax[r.Generation]; !ok || r.Step > v {
				doneMax[r.Generation] = r.Step
			}
		}
	}
	// No split brain: a generation stops before the steps of a later one.
	gens := make([]uint64, 0, len(doneMin))
	for g := range doneMin {
		gens = append(gens, g)
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i] < gens[j] })
	for i, g := range gens {
		for _, h := range gens[i+1:] {
			if doneMax[g] > doneMin[h] {
				t.Errorf("generation %d completed step %d after generation %d had started at step %d: two generations made progress at once",
					g, doneMax[g], h, doneMin[h])
			}
		}
	}
	lost, repeated := 0, 0
	for e := 0; e*stepsPerEpoch < steps; e++ {
		seen := map[int]int{}
		full := true
		for s := int64(e * stepsPerEpoch); s < int64((e+1)*stepsPerEpoch); s++ {
			if s >= int64(steps) {
				full = false
				break
			}
			if skipped[s] {
				full = false
				continue
			}
			m, ok := final[s]
			if !ok && doneGen[s] > 0 {
				// Rank 0 died between the step and its metrics line.
				m, ok = metric{Step: s, Generation: doneGen[s]}, true
			}
			if !ok {
				t.Errorf("step %d never completed", s)
				lost += batch
				continue
			}
			parts := contrib[key{m.Generation, s}]
			if len(parts) != world[m.Generation] {
				t.Errorf("step %d completed in generation %d (world %d) with contributions from %d ranks", s, m.Generation, world[m.Generation], len(parts))
			}
			var win []int
			for r := 0; r < world[m.Generation]; r++ {
				win = append(win, parts[r]...)
			}
			if len(win) != batch {
				t.Errorf("step %d: %d samples, want the global batch %d", s, len(win), batch)
			}
			if want := ref[s]; want != nil && !equalInts(win, want) {
				t.Errorf("step %d: the global batch differs from the uninterrupted run's", s)
			}
			for _, i := range win {
				seen[i]++
			}
		}
		for i, n := range seen {
			if n > 1 {
				repeated += n - 1
				t.Errorf("epoch %d: sample %d seen %d times", e, i, n)
			}
		}
		if full && len(seen) != nTrain {
			lost += nTrain - len(seen)
			t.Errorf("epoch %d: %d distinct samples, want %d", e, len(seen), nTrain)
		}
	}
	t.Logf("lineage: %d steps, %d generations, samples lost %d, repeated %d", steps, len(gens), lost, repeated)
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// completedGens maps each step to the newest generation in which some rank
// completed it, from the sample logs of dir ("" for none).
func completedGens(t *testing.T, dir string) map[int64]uint64 {
	t.Helper()
	out := map[int64]uint64{}
	if dir == "" {
		return out
	}
	for _, r := range readSamples(t, dir) {
		if r.Event == "done" && r.Generation > out[r.Step] {
			out[r.Step] = r.Generation
		}
	}
	return out
}

// reference is an uninterrupted run of the same configuration: the loss of
// every step and the global batch of every step.
type reference struct {
	loss  map[int64]float64
	batch map[int64][]int
}

var (
	refMu   sync.Mutex
	refRuns = map[string]*reference{}
)

// referenceRun runs (once per step count) one worker without faults.
func referenceRun(t *testing.T, steps int) *reference {
	t.Helper()
	return referenceRunWith(t, steps, nil)
}

// referenceRunWith runs one worker with extra training flags and
// environment (once per combination).
func referenceRunWith(t *testing.T, steps int, extra []string, env ...string) *reference {
	t.Helper()
	refMu.Lock()
	defer refMu.Unlock()
	key := fmt.Sprint(steps, extra, env)
	if r := refRuns[key]; r != nil {
		return r
	}
	c := newCluster(t, clusterOpts{workers: 1, steps: steps, coordArgs: extra})
	c.addWorker(env)
	c.waitDone(2 * time.Minute)
	r := &reference{loss: map[int64]float64{}, batch: map[int64][]int{}}
	for s, m := range lastWins(readMetrics(t, c.out)) {
		r.loss[s] = m.Loss
	}
	for _, rec := range readSamples(t, c.dir) {
		if rec.Event == "contribute" {
			r.batch[rec.Step] = rec.Indices
		}
	}
	if len(r.loss) == 0 {
		t.Fatalf("reference run logged no step")
	}
	refRuns[key] = r
	return r
}

// compareLosses checks every step's loss against the reference; it returns
// the largest difference.
//
// A step whose metrics line is missing passes when the sample logs of dir
// show it completed: rank 0 died after the step and before its line.
func compareLosses(t *testing.T, dir, out string, ref *reference, tol float64, skipped map[int64]bool) float64 {
	t.Helper()
	worst := 0.0
	got := lastWins(readMetrics(t, out))
	done := completedGens(t, dir)
	last := int64(-1)
	for s := range got {
		last = max(last, s)
	}
	for s, want := range ref.loss {
		if skipped[s] || s > last { // a run stopped early is compared up to its last step
			continue
		}
		m, ok := got[s]
		if !ok {
			if done[s] > 0 {
				t.Logf("step %d completed (generation %d) but its metrics line was lost with rank 0", s, done[s])
			} else {
				t.Errorf("step %d: no loss logged", s)
			}
			continue
		}
		d := math.Abs(m.Loss - want)
		worst = math.Max(worst, d)
		if d > tol {
			t.Errorf("step %d: loss %.7f, the uninterrupted run's %.7f (|Δ| %.2g > %g)", s, m.Loss, want, d, tol)
		}
	}
	return worst
}

// rankOf finds the worker holding rank r in the latest generation that
// worker logs announce ("generation ... rank=R").
func (c *cluster) rankOf(r int) (*proc, uint64) {
	re := regexp.MustCompile(`msg=generation gen=(\d+) action=run rank=(\d+)`)
	var best *proc
	var bestGen uint64
	for _, p := range c.workers {
		if !p.alive() {
			continue
		}
		for _, m := range re.FindAllStringSubmatch(p.output(), -1) {
			g, _ := strconv.ParseUint(m[1], 10, 64)
			rk, _ := strconv.Atoi(m[2])
			if rk == r && g >= bestGen {
				best, bestGen = p, g
			}
		}
	}
	return best, bestGen
}

// firstStepAfter returns the wall time of the first step completed in a
// generation newer than gen (from metrics.jsonl), waiting up to d.
func (c *cluster) firstStepAfter(gen uint64, d time.Duration) (metric, bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, m := range readMetrics(c.t, c.out) {
			if m.Generation > gen {
				return m, true
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return metric{}, false
}

// unixTime converts metrics' Unix seconds.
func unixTime(sec float64) time.Time {
	return time.Unix(0, int64(sec*1e9))
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 11)) }

// syscallKillGroup sends SIGKILL to p's whole process group (p and the
// processes it started).
func syscallKillGroup(p *proc) error { return syscall.Kill(-p.pid(), syscall.SIGKILL) }

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	lin "github.com/infonce/infonce/internal/lineage"
	"github.com/infonce/infonce/internal/testcluster"
	"github.com/infonce/infonce/rundir"
	"github.com/infonce/infonce/worker"
)

// Shared by every test: the binary and the data set.
var (
	binary   string // the infonce binary (testcluster.Binary)
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
	testcluster.Cleanup()
	os.RemoveAll(dir)
	os.Exit(code)
}

// setup builds the binary, with the faultinject tag so that it reads the
// fault variables (worker.EnvFaultNaNSteps and the others; testcluster
// builds with it), and writes the data set into dir.
func setup(dir string) error {
	var err error
	if binary, err = testcluster.Binary(context.Background()); err != nil {
		return err
	}
	// A worker run as another user (TestPartition) reads the data set.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	dataDir = filepath.Join(dir, "data")
	return testcluster.WriteMNIST(dataDir, nTrain, nTest)
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

// Every process of the tests runs on one thread.
var procEnv = []string{"GOMAXPROCS=1"}

type (
	proc    = testcluster.Proc
	cluster = testcluster.Cluster
)

// start runs the binary with args; its output goes to dir/name.log.
func start(t *testing.T, dir, name string, env []string, args ...string) *proc {
	t.Helper()
	return testcluster.Start(t, testcluster.ProcOptions{Binary: binary, Dir: dir, Name: name, Args: args, Env: append(append([]string{}, procEnv...), env...)})
}

type clusterOpts struct {
	workers, min, max int
	steps             int
	coordArgs         []string // extra coordinator flags
	workerArgs        []string // extra worker flags
}

// newCluster starts a coordinator whose workers log their samples;
// workers are added with AddWorker.
func newCluster(t *testing.T, o clusterOpts) *cluster {
	t.Helper()
	return testcluster.New(t, testcluster.Options{
		Workers: o.workers, Min: o.min, Max: o.max, Steps: o.steps, TrainArgs: trainArgs,
		CoordArgs: o.coordArgs, WorkerArgs: o.workerArgs, Env: procEnv, SampleLogs: true, Binary: binary,
	})
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

// lineageB is lineage for a global batch of B: the checks of package
// lineage, each problem an error of t.
func lineageB(t *testing.T, dir, out string, steps, batch int, ref map[int64][]int, skipped map[int64]bool) {
	t.Helper()
	rep := lin.Check(readSamples(t, dir), testcluster.ReadMetrics(t, out),
		lin.Run{Steps: steps, Batch: batch, N: nTrain, Ref: ref, Skipped: skipped})
	for _, p := range rep.Problems {
		t.Error(p)
	}
	t.Logf("lineage: %d steps, %d generations, samples lost %d, repeated %d", steps, rep.Generations, rep.Lost, rep.Repeated)
}

// completedGens maps each step to the newest generation in which some rank
// completed it, from the sample logs of dir ("" for none).
func completedGens(t *testing.T, dir string) map[int64]uint64 {
	t.Helper()
	if dir == "" {
		return map[int64]uint64{}
	}
	return lin.CompletedGens(readSamples(t, dir))
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
	c.AddWorker(env)
	c.WaitDone(2 * time.Minute)
	r := &reference{loss: map[int64]float64{}, batch: map[int64][]int{}}
	for s, m := range rundir.LastWins(c.Metrics()) {
		r.loss[s] = m.Loss
	}
	for _, rec := range readSamples(t, c.Dir) {
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
	got := rundir.LastWins(testcluster.ReadMetrics(t, out))
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

// unixTime converts metrics' Unix seconds.
func unixTime(sec float64) time.Time {
	return time.Unix(0, int64(sec*1e9))
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 11)) }

package testcluster

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/rundir"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

func TestBuildArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    BuildOptions
		want []string
		not  []string
	}{
		{"test build", BuildOptions{}, []string{"-tags", "faultinject", Package}, []string{"-trimpath"}},
		{"production", BuildOptions{Production: true}, []string{"-trimpath", Package}, []string{"faultinject"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.o.args("/x/infonce")
			for _, w := range tc.want {
				if !slices.Contains(args, w) {
					t.Errorf("go %v lacks %q", args, w)
				}
			}
			for _, n := range tc.not {
				if slices.Contains(args, n) {
					t.Errorf("go %v has %q", args, n)
				}
			}
		})
	}
	if (BuildOptions{}).name() == (BuildOptions{Production: true}).name() {
		t.Error("the two builds share a file name")
	}
}

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb", 5, "a\nb"},
		{"a\nb\nc", 1, "c"},
	} {
		if got := Tail(tc.in, tc.n); got != tc.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("port %d is not free: %v", p, err)
	}
	l.Close()
}

func TestWriteMNIST(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := WriteMNIST(dir, 100, 20); err != nil {
		t.Fatal(err)
	}
	set, err := dataset.Load("idx:"+dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if set.Train.N != 100 || set.Test.N != 20 || len(set.Classes) != 10 {
		t.Errorf("loaded %d training, %d test images, %d classes; want 100, 20, 10", set.Train.N, set.Test.N, len(set.Classes))
	}
	if err := WriteMNIST(dir, 0, 1); err == nil {
		t.Error("an empty training split was written")
	}
}

func TestReadMetricsOfNoRun(t *testing.T) {
	if ms := ReadMetrics(t, t.TempDir()); ms != nil {
		t.Errorf("lines %v in an empty directory", ms)
	}
}

// trainArgs is a run small enough for two workers on two cores.
func trainArgs(data string) func(out string, steps int) []string {
	return func(out string, steps int) []string {
		return []string{"--data", "idx:" + data, "--batch", "32", "--hidden", "16", "--text-hidden", "8", "--dim", "8",
			"--steps", strconv.Itoa(steps), "--log-every", "1", "--out", out}
	}
}

// A two-worker cluster trains to the end: the steps come in order, the
// run ends cleanly, and the run files hold every step and the summary.
func TestClusterRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts three processes; skipped with -short")
	}
	data := filepath.Join(t.TempDir(), "data")
	if err := WriteMNIST(data, 256, 64); err != nil {
		t.Fatal(err)
	}
	const steps = 40
	c := New(t, Options{Workers: 2, Steps: steps, TrainArgs: trainArgs(data), SampleLogs: true, Env: []string{"GOMAXPROCS=1"}})
	if c.Addr == "" || c.Gossip == "" {
		t.Fatalf("coordinator address %q, gossip %q", c.Addr, c.Gossip)
	}
	c.AddWorker(nil)
	c.AddWorkerWith(WorkerOptions{})
	if m := c.WaitStep(5, 2*time.Minute); m.Step < 5 || m.Workers != 2 {
		t.Errorf("step %d with %d workers, want step 5 or later with 2", m.Step, m.Workers)
	}
	if p, gen := c.RankOf(0); p == nil || gen == 0 {
		t.Errorf("no worker announced rank 0 (gen %d)", gen)
	}
	c.WaitDone(2 * time.Minute)
	ms := c.Metrics()
	if l := rundir.Losses(ms); len(l) != steps {
		t.Errorf("%d steps logged, want %d", len(l), steps)
	}
	sum, err := c.Summary()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Steps != steps || sum.Workers != 2 || sum.ParamSHA256 == "" {
		t.Errorf("summary: %d steps, %d workers, sha %q", sum.Steps, sum.Workers, sum.ParamSHA256)
	}
	if _, err := os.Stat(c.SampleLog("worker1")); err != nil {
		t.Errorf("no sample log: %v", err)
	}
	if _, err := rundir.LatestCheckpoint(c.Out); err != nil {
		t.Errorf("no checkpoint: %v", err)
	}
}

// Waits end with their context; a killed worker counts as killed by the
// test.
func TestClusterWaitsAndKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts two processes; skipped with -short")
	}
	data := filepath.Join(t.TempDir(), "data")
	if err := WriteMNIST(data, 256, 64); err != nil {
		t.Fatal(err)
	}
	c := New(t, Options{Workers: 1, Steps: 100000, TrainArgs: trainArgs(data), Env: []string{"GOMAXPROCS=1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// No worker yet: nothing is logged.
	if _, err := c.WaitStepContext(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait for a step of a run without workers: %v, want the deadline", err)
	}
	if _, err := c.Summary(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("summary of a running job: %v, want fs.ErrNotExist", err)
	}
	w := c.AddWorker(nil)
	c.WaitStep(2, 2*time.Minute)
	w.Kill()
	if w.Alive() || !w.KilledByTest() {
		t.Errorf("worker alive %v, killed %v (%v)", w.Alive(), w.KilledByTest(), w.Err())
	}
	_ = c.Coord.Signal(syscall.SIGKILL)
	if err := c.WaitDoneContext(context.Background()); err != nil {
		t.Errorf("a cluster the test killed: %v", err)
	}
	if !strings.Contains(c.Coord.Output(), "coordinator listening on") {
		t.Errorf("coordinator log: %s", Tail(c.Coord.Output(), 5))
	}
}

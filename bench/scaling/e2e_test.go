package scaling

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/infonce/infonce/internal/testcluster"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testcluster.Cleanup()
	os.Exit(code)
}

// buildInfonce builds the infonce binary the benchmark re-executes, once
// per test binary.
func buildInfonce(t *testing.T) string {
	t.Helper()
	bin, err := testcluster.Binary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built the infonce binary in %v", testcluster.BuildTime(testcluster.BuildOptions{}).Round(time.Millisecond))
	return bin
}

// noLeak fails t if goroutines started after before are still running a
// moment later.
func noLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Errorf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tiny are the training flags of a model small enough for a test.
var tiny = []string{"--batch", "32", "--hidden", "32", "--text-hidden", "16", "--dim", "8", "--log-every", "1"}

func TestTinyRunOnLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the infonce binary and trains three jobs; skipped with -short")
	}
	bin := buildInfonce(t)
	defer noLeak(t, runtime.NumGoroutine())
	out := t.TempDir()
	args := append([]string{"--workers", "1,2", "--steps", "2", "--threads-per-worker", "1", "--repeat", "1", "--out", out}, tiny...)
	var stdout, stderr bytes.Buffer
	if err := Main(context.Background(), args, &stdout, &stderr, bin); err != nil {
		log, _ := os.ReadFile(filepath.Join(out, "jobs.log"))
		t.Fatalf("Main: %v\n%s\n%s", err, stderr.String(), log)
	}
	checkOutputs(t, out, []int{1, 2})
	f, err := os.Open(filepath.Join(out, "scaling.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := ReadReport(f)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Batch != 32 || rep.Dim != 8 || rep.Params == 0 || rep.Network != "loopback" || rep.Model == nil {
		t.Errorf("report %+v", rep)
	}
	for _, p := range rep.Points {
		if p.SamplesPerSecond <= 0 || p.StepTime.ForwardMS <= 0 || p.Threads != 1 {
			t.Errorf("point %+v", p)
		}
		// One thread per worker: the 1-worker job trains in-process under
		// GOMAXPROCS=1, and neither job may keep more cores busy than it
		// has workers (plus a margin for the kernel's time).
		if p.CoresBusy > float64(p.Workers)*1.15+0.1 {
			t.Errorf("%d worker(s) at 1 thread kept %.2f cores busy", p.Workers, p.CoresBusy)
		}
	}
	if rep.Points[1].StepTime.ReduceMS <= 0 || rep.Points[1].StepTime.GatherMS <= 0 {
		t.Errorf("2 workers measured no communication: %+v", rep.Points[1].StepTime)
	}
	for _, want := range []string{"workers", "efficiency", "model: T(n)"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
}

// netnsUsable reports why this machine cannot run the namespace mode.
func netnsUsable() error {
	if err := CheckNetns(); err != nil {
		return err
	}
	name := fmt.Sprintf("infonce-scaling-probe-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add: %v: %s", err, bytes.TrimSpace(out))
	}
	_ = exec.Command("ip", "netns", "del", name).Run()
	return nil
}

// leftoverNamespaces lists this process's namespaces still present.
func leftoverNamespaces(t *testing.T) []string {
	t.Helper()
	prefix := fmt.Sprintf("infonce-scaling-%04x", os.Getpid()&0xffff)
	entries, _ := os.ReadDir("/run/netns")
	var left []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			left = append(left, e.Name())
		}
	}
	return left
}

func TestTinyRunInNetworkNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the infonce binary and trains in network namespaces; skipped with -short")
	}
	if err := netnsUsable(); err != nil {
		t.Skipf("network namespaces unusable here: %v", err)
	}
	bin := buildInfonce(t)
	defer noLeak(t, runtime.NumGoroutine())
	out := t.TempDir()
	args := append([]string{"--workers", "2", "--steps", "2", "--threads-per-worker", "1", "--out", out, "--netem", "rate=200mbit"}, tiny...)
	var stdout, stderr bytes.Buffer
	err := Main(context.Background(), args, &stdout, &stderr, bin)
	if left := leftoverNamespaces(t); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(out, "jobs.log"))
		t.Fatalf("Main: %v\n%s\n%s", err, stderr.String(), log)
	}
	checkOutputs(t, out, []int{2})
	f, err := os.Open(filepath.Join(out, "scaling.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := ReadReport(f)
	if err != nil {
		t.Fatal(err)
	}
	if rep.LinkBPS != 200e6 || !strings.Contains(rep.Network, "rate=200mbit") || rep.Points[0].StepTime.ReduceMS <= 0 {
		t.Errorf("report network %q, link %g, 2-worker breakdown %+v", rep.Network, rep.LinkBPS, rep.Points[0].StepTime)
	}
	// The workers bound their namespaces' addresses.
	log, _ := os.ReadFile(filepath.Join(out, "jobs.log"))
	if !strings.Contains(string(log), "10.") || !strings.Contains(string(log), "tbf rate 200000000bit") {
		t.Errorf("jobs.log shows no namespace addresses or shaping:\n%.2000s", log)
	}
}

func TestNetnsCleansUpAfterAFailedSetup(t *testing.T) {
	if err := netnsUsable(); err != nil {
		t.Skipf("network namespaces unusable here: %v", err)
	}
	defer noLeak(t, runtime.NumGoroutine())
	// A delay needs netem; where the kernel has it the job must still
	// fail here, on a binary that does not exist, after the network is up.
	l := NetnsLauncher{Binary: filepath.Join(t.TempDir(), "no-such-infonce"), Limits: NetLimits{RateBitsPerSecond: 1e8, Delay: 1e6}, Subnet: DefaultSubnet()}
	_, err := l.Launch(context.Background(), Job{Workers: 2, Steps: 1, Out: t.TempDir()})
	if err == nil {
		t.Fatal("a job of a missing binary succeeded")
	}
	t.Logf("failed as expected: %v", err)
	if left := leftoverNamespaces(t); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
}

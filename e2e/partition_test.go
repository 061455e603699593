package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infonce/infonce/internal/testcluster"
	"github.com/infonce/infonce/rundir"
)

// partitionUID is the user the cut-off worker runs as, so that one
// iptables rule (owner match) drops every packet it sends, and only its.
const partitionUID = 54321

// iptablesRule is the rule that cuts the worker off: on loopback every
// packet of the user is dropped, so its TCP links stall and its gossip
// probes go unanswered, exactly as behind a broken network.
func iptablesRule(op string) []string {
	return []string{op, "OUTPUT", "-m", "owner", "--uid-owner", fmt.Sprint(partitionUID),
		"-m", "comment", "--comment", "infonce-e2e-partition", "-j", "DROP"}
}

// canPartition reports why iptables cannot be used, or "".
func canPartition() string {
	if os.Geteuid() != 0 {
		return "needs root to add iptables rules and to run the cut-off worker as another user"
	}
	path, err := exec.LookPath("iptables")
	if err != nil {
		return "needs iptables"
	}
	if out, err := exec.Command(path, "-L", "OUTPUT", "-n").CombinedOutput(); err != nil {
		return fmt.Sprintf("iptables does not work here: %v: %s", err, out)
	}
	return ""
}

// faultRun is a fault that removes one worker for a while: cut starts it,
// heal ends it.
type faultRun struct {
	name      string
	asUID     int // run the victim as this user (0: as the test)
	cut, heal func(t *testing.T, p *proc)
	hold      time.Duration
}

// TestPartition cuts one of three workers off the network (iptables) for
// five seconds: the majority, which still reaches the coordinator, goes on
// in a new generation; the cut-off worker stops stepping within the
// collective deadline, and when the network heals it joins again as a new
// member, is admitted at a step boundary and trains in a generation of
// three. No two generations ever make progress at once.
func TestPartition(t *testing.T) {
	needSetup(t)
	if why := canPartition(); why != "" {
		t.Skip("network partition: " + why)
	}
	run := func(t *testing.T, args ...string) {
		t.Helper()
		if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
			t.Fatalf("iptables %v: %v: %s", args, err, out)
		}
	}
	cut := func(t *testing.T, _ *proc) {
		run(t, iptablesRule("-I")...)
		t.Cleanup(func() { _ = exec.Command("iptables", iptablesRule("-D")...).Run() })
	}
	heal := func(t *testing.T, _ *proc) { run(t, iptablesRule("-D")...) }
	removeAndRejoin(t, faultRun{name: "partition", asUID: partitionUID, cut: cut, heal: heal, hold: 5 * time.Second})
}

// TestSlowWorker stops one of three workers with SIGSTOP for longer than
// every deadline, then lets it continue with SIGCONT: it is treated as
// failed and removed, and later joins again.
func TestSlowWorker(t *testing.T) {
	needSetup(t)
	stop := func(t *testing.T, p *proc) { _ = syscall.Kill(p.Pid(), syscall.SIGSTOP) }
	cont := func(t *testing.T, p *proc) { _ = syscall.Kill(p.Pid(), syscall.SIGCONT) }
	removeAndRejoin(t, faultRun{name: "sigstop", cut: stop, heal: cont, hold: 4 * time.Second})
}

func removeAndRejoin(t *testing.T, f faultRun) {
	// The run is long enough to outlast the fault on any machine; the test
	// stops it (SIGTERM) once the victim trained again. With the constant
	// learning rate the losses of the first steps do not depend on the
	// number of steps, so a shorter uninterrupted run is the reference.
	const steps = 100000
	ref := referenceRun(t, 1000)
	c := newCluster(t, clusterOpts{workers: 3, min: 2, max: 3, steps: steps})
	var victim *proc
	if f.asUID != 0 {
		// The cut-off worker writes its logs as another user.
		for _, d := range []string{filepath.Dir(binary), filepath.Dir(c.Dir), c.Dir} {
			if err := os.Chmod(d, 0o777); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(c.Out, 0o777); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(c.Out, 0o777)
	}
	for i := 1; i <= 3; i++ {
		if i == 3 && f.asUID != 0 {
			victim = c.AddWorkerWith(testcluster.WorkerOptions{UID: uint32(f.asUID)})
			continue
		}
		p := c.AddWorker(nil)
		if i == 3 {
			victim = p
		}
	}
	c.WaitStep(40, 90*time.Second)
	ms := testcluster.ReadMetrics(t, c.Out)
	gen := ms[len(ms)-1].Generation
	cutAt := time.Now()
	f.cut(t, victim)
	m, ok := c.FirstStepAfter(gen, 30*time.Second)
	if !ok {
		f.heal(t, victim)
		c.Dump()
		t.Fatal("the majority made no step in a new generation within 30s")
	}
	recovery := unixTime(m.Time).Sub(cutAt)
	if d := f.hold - time.Since(cutAt); d > 0 {
		time.Sleep(d)
	}
	healAt := time.Now()
	f.heal(t, victim)
	// The victim comes back: a generation of three again.
	var back rundir.Metric
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && back.Workers != 3 {
		for _, x := range testcluster.ReadMetrics(t, c.Out) {
			if x.Generation > m.Generation && x.Workers == 3 {
				back = x
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if back.Workers != 3 {
		c.Dump()
		t.Fatalf("the %s worker did not rejoin within 60s of the heal", f.name)
	}
	rejoin := unixTime(back.Time).Sub(healAt)
	c.WaitStep(back.Step+20, time.Minute)
	c.StopGracefully(time.Minute)
	c.WaitDone(time.Minute)
	ms = testcluster.ReadMetrics(t, c.Out)
	done := int(ms[len(ms)-1].Step) + 1
	// The victim stopped stepping within the deadline of a collective
	// (3s) of the cut, and stepped again only in a later generation.
	var lastDone time.Time
	for _, r := range readSamples(t, c.Dir) {
		if r.Worker == victim.Name && r.Event == "done" && r.Generation <= gen {
			if ts := time.Unix(0, r.UnixNano); ts.After(lastDone) {
				lastDone = ts
			}
		}
	}
	stoppedAfter := lastDone.Sub(cutAt)
	if f.asUID != 0 && stoppedAfter > 3*time.Second+time.Second {
		t.Errorf("the cut-off worker completed a step %v after the cut", stoppedAfter)
	}
	if !strings.Contains(victim.Output(), "joining again") {
		t.Errorf("the %s worker did not join again", f.name)
	}
	worst := compareLosses(t, c.Dir, c.Out, ref, 1e-4, nil)
	lineage(t, c.Dir, c.Out, done, ref.batch, nil)
	t.Logf("FIGURE %s: recovery %v (fault to the majority's next step, generation %d -> %d, world %d), the victim's last step %v after the fault, rejoined %v after the heal (generation %d, world %d), worst |Δloss| %.2g",
		f.name, recovery.Round(time.Millisecond), gen, m.Generation, m.Workers, stoppedAfter.Round(time.Millisecond),
		rejoin.Round(time.Millisecond), back.Generation, back.Workers, worst)
	if m.Workers != 2 {
		t.Errorf("the majority's generation has %d workers, want 2", m.Workers)
	}
}

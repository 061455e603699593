package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infonce/infonce/internal/testcluster"
	"github.com/infonce/infonce/worker"
)

// netns is a network namespace joined to the host by a veth pair: the
// host end has HostIP, the namespace's end NSIP (a /30 of its own).
type netns struct {
	Name, HostIP, NSIP string
}

// canNetns reports why a network namespace cannot be made here, or "".
func canNetns() string {
	if os.Geteuid() != 0 {
		return "needs root to create a network namespace"
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "needs " + tool
		}
	}
	return ""
}

// newNetns creates a namespace with a veth link to the host on a random
// 10.231.x.0/30; it is removed when the test ends. Nothing in it reaches
// beyond the host's end of the link.
func newNetns(t *testing.T) *netns {
	t.Helper()
	id := rand.IntN(1 << 14)
	n := &netns{
		Name:   fmt.Sprintf("infonce-e2e-%d-%d", os.Getpid(), id),
		HostIP: fmt.Sprintf("10.231.%d.%d", id>>6, (id&63)*4+1),
		NSIP:   fmt.Sprintf("10.231.%d.%d", id>>6, (id&63)*4+2),
	}
	host, peer := fmt.Sprintf("ivh%d", id), fmt.Sprintf("ivn%d", id)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", n.Name)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", host).Run()
		_ = exec.Command("ip", "netns", "del", n.Name).Run()
	})
	ip("link", "add", host, "type", "veth", "peer", "name", peer)
	ip("link", "set", peer, "netns", n.Name)
	ip("addr", "add", n.HostIP+"/30", "dev", host)
	ip("link", "set", host, "up")
	ip("-n", n.Name, "addr", "add", n.NSIP+"/30", "dev", peer)
	ip("-n", n.Name, "link", "set", peer, "up")
	ip("-n", n.Name, "link", "set", "lo", "up")
	return n
}

// drop makes the namespace silent: every packet in or out is dropped
// (DROP, not REJECT: no reset, no ICMP), as behind a pulled cable.
func (n *netns) drop(t *testing.T) {
	t.Helper()
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		if out, err := exec.Command("ip", "netns", "exec", n.Name, "iptables", "-A", chain, "-j", "DROP").CombinedOutput(); err != nil {
			t.Fatalf("iptables in %s: %v: %s", n.Name, err, out)
		}
	}
}

var declaredDeadRE = regexp.MustCompile(`time=(\S+) level=WARN msg="worker declared dead" .*reason="([^"]*)"`)

// TestVanishedWorker runs the coordinator and two workers on the host end
// of a veth link and a third worker in a network namespace behind it, all
// with the LAN settings (--lan: gossip every 100 ms, a 15 s grace for a
// closed control stream, 10 s keepalives), the data plane over TCP. After
// step 40 every packet of the namespace is dropped: the worker vanishes
// without closing a socket. Gossip must declare it dead within 2 s; the
// two others go on in a new generation and finish the run with the
// uninterrupted run's batches and losses. Three trials; the detection
// times are FIGURE lines.
func TestVanishedWorker(t *testing.T) {
	needSetup(t)
	if why := canNetns(); why != "" {
		t.Skip("vanished worker: " + why)
	}
	const steps = 150
	ref := referenceRun(t, steps)
	var detect, resumed []time.Duration
	for trial := range 3 {
		t.Run(fmt.Sprint("trial", trial), func(t *testing.T) {
			ns := newNetns(t)
			lan := func(ip string) []string {
				return []string{"--lan", "--data-bind", ip + ":0", "--gossip-bind", ip, "--data-shm=false"}
			}
			c := newCluster(t, clusterOpts{workers: 3, min: 2, max: 3, steps: steps,
				coordArgs: []string{"--lan", "--bind", ns.HostIP, "--port", "0", "--gossip-port", "0", "--join-timeout", "1m"}})
			c.AddWorker(nil, lan(ns.HostIP)...)
			c.AddWorker(nil, lan(ns.HostIP)...)
			// The third worker, in the namespace: `ip netns exec` runs the
			// binary there (same process, same pid).
			c.N++
			name := fmt.Sprintf("worker%d", c.N)
			args := append([]string{"netns", "exec", ns.Name, binary, "worker", "--coordinator", c.Addr, "--name", name,
				"--no-eval", "--op-timeout", "3s"}, lan(ns.NSIP)...)
			ipPath, _ := exec.LookPath("ip")
			victim := testcluster.Start(t, testcluster.ProcOptions{Binary: ipPath, Dir: c.Dir, Name: name, Args: args,
				Env: append(slices.Clone(procEnv), worker.EnvSampleLog+"="+c.SampleLog(name))})
			c.Workers[name] = victim
			m := c.WaitStep(40, 90*time.Second)
			if m.Workers != 3 {
				t.Fatalf("step 40 ran with %d workers, want 3", m.Workers)
			}
			cutAt := time.Now()
			ns.drop(t)
			next, ok := c.FirstStepAfter(m.Generation, 30*time.Second)
			if !ok {
				c.Dump()
				t.Fatal("the two others made no step in a new generation within 30s")
			}
			dm := declaredDeadRE.FindStringSubmatch(c.Coord.Output())
			if dm == nil {
				c.Dump()
				t.Fatal("the coordinator declared no worker dead")
			}
			deadAt, err := time.Parse(time.RFC3339Nano, dm[1])
			if err != nil {
				t.Fatal(err)
			}
			d, r := deadAt.Sub(cutAt), unixTime(next.Time).Sub(cutAt)
			detect, resumed = append(detect, d), append(resumed, r)
			c.WaitStep(steps-1, 2*time.Minute)
			victim.KillGroup()
			c.WaitDone(time.Minute, name)
			worst := compareLosses(t, c.Dir, c.Out, ref, 1e-4, nil)
			lineage(t, c.Dir, c.Out, steps, ref.batch, nil)
			t.Logf("FIGURE vanish: declared dead %v after the drop (%s), next step of the two others %v after it (generation %d -> %d, world %d), worst |Δloss| %.2g",
				d.Round(time.Millisecond), dm[2], r.Round(time.Millisecond), m.Generation, next.Generation, next.Workers, worst)
			if d > 2*time.Second {
				t.Errorf("the vanished worker was declared dead %v after the drop, want at most 2s", d)
			}
			if !strings.Contains(dm[2], "gossip") {
				t.Errorf("the vanished worker was declared dead by %q, want gossip", dm[2])
			}
			if next.Workers != 2 {
				t.Errorf("the new generation has %d workers, want 2", next.Workers)
			}
		})
	}
	if len(detect) > 0 {
		t.Logf("FIGURE vanish over %d trials: declared dead after median %v, max %v; next step after median %v, max %v",
			len(detect), median(detect).Round(time.Millisecond), slices.Max(detect).Round(time.Millisecond),
			median(resumed).Round(time.Millisecond), slices.Max(resumed).Round(time.Millisecond))
	}
}

// median of ds (the mean of the middle two for an even count).
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

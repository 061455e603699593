package scaling

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// NetnsLauncher runs a job on an emulated network: every worker in its own
// network namespace, joined by a veth pair to a bridge in one more
// namespace (the switch), where the coordinator listens on the bridge's
// address. Each worker's link is shaped in both directions with tc (tbf for
// the rate, netem for the delay). All addresses are in a private /24 inside
// these namespaces, which are deleted when the job ends, so the host's own
// interfaces and firewall are never touched.
//
//	switch namespace:  bridge 10.a.b.1  ─┬─ veth ── worker 0 namespace 10.a.b.2
//	(coordinator)                        ├─ veth ── worker 1 namespace 10.a.b.3
//	                                     └─ …
type NetnsLauncher struct {
	Binary         string
	Limits         NetLimits
	Subnet         string    // "10.a.b": the /24 of the bridge (.1) and the workers (.2, .3, …)
	Stdout, Stderr io.Writer // the processes' output, written concurrently (an *os.File is safe); nil discards it
	Log            io.Writer // the commands that build the network; nil discards them
	Nice           int       // run the coordinator and the workers under 'nice -n Nice' when not 0
}

// launchSeq tells the namespaces of consecutive jobs apart.
var launchSeq atomic.Uint32

// topology names the namespaces and links of one job.
type topology struct {
	id      string
	sw      string   // the switch namespace
	bridge  string   // bridge in sw
	workers []string // one namespace per worker
	subnet  string
}

func newTopology(subnet string, n int) topology {
	id := fmt.Sprintf("%04x%x", os.Getpid()&0xffff, launchSeq.Add(1)&0xff)
	t := topology{id: id, sw: "infonce-scaling-" + id + "-sw", bridge: "isb" + id, subnet: subnet}
	for i := range n {
		t.workers = append(t.workers, "infonce-scaling-"+id+"-w"+strconv.Itoa(i))
	}
	return t
}

func (t topology) bridgeIP() string      { return t.subnet + ".1" }
func (t topology) workerIP(i int) string { return t.subnet + "." + strconv.Itoa(i+2) }
func (t topology) swSide(i int) string   { return "isv" + t.id + "s" + strconv.Itoa(i) } // ≤ 15 bytes
func (t topology) wSide(i int) string    { return "isv" + t.id + "w" + strconv.Itoa(i) }

// DefaultSubnet picks a /24 of 10.231.0.0/16 from the process id.
func DefaultSubnet() string {
	return "10.231." + strconv.Itoa(os.Getpid()%250+1)
}

// CheckNetns reports why namespace mode cannot run here, or nil.
func CheckNetns() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (apt-get install -y iproute2): %w", tool, err)
		}
	}
	return nil
}

// sh runs one setup command and returns its error with its output.
func (l NetnsLauncher) sh(ctx context.Context, name string, args ...string) error {
	if l.Log != nil {
		fmt.Fprintln(l.Log, "+", name, strings.Join(args, " "))
	}
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// build creates the namespaces, the bridge, the veth pairs and the shaping.
// On error, what was built is left for teardown.
func (l NetnsLauncher) build(ctx context.Context, t topology) error {
	if err := l.sh(ctx, "ip", "netns", "add", t.sw); err != nil {
		return err
	}
	steps := [][]string{
		{"ip", "-n", t.sw, "link", "set", "lo", "up"},
		{"ip", "-n", t.sw, "link", "add", t.bridge, "type", "bridge"},
		{"ip", "-n", t.sw, "addr", "add", t.bridgeIP() + "/24", "dev", t.bridge},
		{"ip", "-n", t.sw, "link", "set", t.bridge, "up"},
	}
	for _, s := range steps {
		if err := l.sh(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	for i, ns := range t.workers {
		if err := l.sh(ctx, "ip", "netns", "add", ns); err != nil {
			return err
		}
		steps := [][]string{
			{"ip", "-n", t.sw, "link", "add", t.swSide(i), "type", "veth", "peer", "name", t.wSide(i), "netns", ns},
			{"ip", "-n", t.sw, "link", "set", t.swSide(i), "master", t.bridge},
			{"ip", "-n", t.sw, "link", "set", t.swSide(i), "up"},
			{"ip", "-n", ns, "link", "set", "lo", "up"},
			{"ip", "-n", ns, "addr", "add", t.workerIP(i) + "/24", "dev", t.wSide(i)},
			{"ip", "-n", ns, "link", "set", t.wSide(i), "up"},
		}
		for _, s := range steps {
			if err := l.sh(ctx, s[0], s[1:]...); err != nil {
				return err
			}
		}
		// Shape what the worker sends (its side) and what it receives
		// (the switch side), so each worker has a full-duplex link of
		// the given rate; the delay is added once, on what it sends.
		if err := l.shape(ctx, ns, t.wSide(i), l.Limits.Delay); err != nil {
			return err
		}
		if err := l.shape(ctx, t.sw, t.swSide(i), 0); err != nil {
			return err
		}
	}
	return nil
}

// shape puts the rate limit (tbf) and the delay (netem) on dev's egress.
func (l NetnsLauncher) shape(ctx context.Context, ns, dev string, delay time.Duration) error {
	tbf := func(parent ...string) []string {
		rate := l.Limits.RateBitsPerSecond
		// A burst of one millisecond at the rate, at least a few packets.
		burst := max(16*1024, int(rate/8/1000))
		args := append([]string{"-n", ns, "qdisc", "add", "dev", dev}, parent...)
		return append(args, "tbf", "rate", strconv.FormatFloat(rate, 'f', 0, 64)+"bit", "burst", strconv.Itoa(burst), "latency", "100ms")
	}
	switch {
	case delay > 0:
		us := strconv.FormatInt(delay.Microseconds(), 10) + "us"
		if err := l.sh(ctx, "tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "handle", "1:", "netem", "delay", us, "limit", "100000"); err != nil {
			return fmt.Errorf("delay needs the netem qdisc (sch_netem), which this kernel may lack: %w", err)
		}
		if l.Limits.RateBitsPerSecond > 0 {
			return l.sh(ctx, "tc", tbf("parent", "1:1", "handle", "10:")...)
		}
	case l.Limits.RateBitsPerSecond > 0:
		return l.sh(ctx, "tc", tbf("root")...)
	}
	return nil
}

// teardown deletes the job's namespaces; their links go with them.
func (l NetnsLauncher) teardown(t topology) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for _, ns := range append(append([]string{}, t.workers...), t.sw) {
		if _, err := os.Stat("/run/netns/" + ns); err != nil {
			continue
		}
		if err := l.sh(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkSubnetFree refuses a /24 the host already uses.
func checkSubnetFree(ctx context.Context, subnet string) error {
	for _, args := range [][]string{{"-4", "-o", "addr", "show"}, {"-4", "route", "show"}} {
		out, err := exec.CommandContext(ctx, "ip", args...).Output()
		if err != nil {
			return fmt.Errorf("ip %s: %w", strings.Join(args, " "), err)
		}
		if strings.Contains(string(out), subnet+".") {
			return fmt.Errorf("subnet %s.0/24 is in use on this host (choose another with --subnet)", subnet)
		}
	}
	return nil
}

// Launch builds the network, runs the coordinator in the switch namespace
// and each worker in its own, waits for the workers, stops the
// coordinator and deletes the namespaces, whatever happened.
func (l NetnsLauncher) Launch(ctx context.Context, j Job) (u Usage, err error) {
	if err := CheckNetns(); err != nil {
		return u, err
	}
	if j.Workers > 250 {
		return u, fmt.Errorf("%d workers do not fit a /24", j.Workers)
	}
	if err := checkSubnetFree(ctx, l.Subnet); err != nil {
		return u, err
	}
	t := newTopology(l.Subnet, j.Workers)
	defer func() {
		if terr := l.teardown(t); terr != nil {
			err = errors.Join(err, fmt.Errorf("delete the namespaces: %w", terr))
		}
	}()
	if err := l.build(ctx, t); err != nil {
		return u, fmt.Errorf("build the network: %w", err)
	}
	start := time.Now()
	var cpu atomic.Int64 // nanoseconds
	addCPU := func(ps *os.ProcessState) {
		if ps != nil {
			cpu.Add(int64(ps.UserTime() + ps.SystemTime()))
		}
	}

	// The coordinator, in the switch namespace on the bridge's address.
	cargs := []string{"netns", "exec", t.sw, l.Binary, "coordinator", "--bind", t.bridgeIP(), "--workers", strconv.Itoa(j.Workers),
		"--steps", strconv.FormatInt(j.Steps, 10), "--out", j.Out}
	cname, cargs := niced(l.Nice, "ip", append(cargs, j.TrainArgs...)...)
	coord := exec.Command(cname, cargs...)
	coord.Stderr = orDiscard(l.Stderr)
	pipe, err := coord.StdoutPipe()
	if err != nil {
		return u, fmt.Errorf("coordinator: %w", err)
	}
	newSession(coord, l.Nice)
	if err := coord.Start(); err != nil {
		return u, fmt.Errorf("start the coordinator: %w", err)
	}
	if err := setAutogroupNice(coord.Process.Pid, l.Nice); err != nil {
		_ = coord.Process.Kill()
		_ = coord.Wait()
		return u, err
	}
	coordDone := make(chan error, 1)
	stopCoordinator := func() {
		_ = coord.Process.Signal(syscall.SIGTERM)
		select {
		case <-coordDone:
		case <-time.After(10 * time.Second):
			_ = coord.Process.Kill()
			<-coordDone
		}
		addCPU(coord.ProcessState)
	}
	addr := make(chan string, 1)
	var copyDone sync.WaitGroup
	copyDone.Add(1)
	go func() {
		defer copyDone.Done()
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, "coordinator listening on "); ok {
				a, _, _ = strings.Cut(a, " ")
				select {
				case addr <- a:
				default:
				}
			}
			fmt.Fprintln(orDiscard(l.Stdout), line)
		}
		_, _ = io.Copy(io.Discard, pipe)
	}()
	go func() { copyDone.Wait(); coordDone <- coord.Wait() }()

	var coordAddr string
	select {
	case coordAddr = <-addr:
	case err := <-coordDone:
		addCPU(coord.ProcessState)
		if err == nil {
			err = errors.New("exit status 0")
		}
		return u, fmt.Errorf("the coordinator exited before listening: %w", err)
	case <-time.After(30 * time.Second):
		stopCoordinator()
		return u, errors.New("the coordinator did not report its address within 30s")
	case <-ctx.Done():
		stopCoordinator()
		return u, ctx.Err()
	}

	threads := j.Threads
	if threads <= 0 {
		threads = max(1, runtime.NumCPU()/j.Workers)
	}
	workers := make([]*exec.Cmd, j.Workers)
	for i := range workers {
		ip := t.workerIP(i)
		name, args := niced(l.Nice, "ip", "netns", "exec", t.workers[i], l.Binary, "worker", "--coordinator", coordAddr,
			"--name", "w"+strconv.Itoa(i), "--out", j.Out, "--no-eval", "--data-bind", ip+":0", "--gossip-bind", ip,
			"--data-shm=false") // the namespaces share /dev/shm: keep the data on the emulated links
		c := exec.Command(name, args...)
		c.Stdout, c.Stderr = orDiscard(l.Stdout), orDiscard(l.Stderr)
		c.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(threads))
		newSession(c, l.Nice)
		err := c.Start()
		if err == nil {
			if err = setAutogroupNice(c.Process.Pid, l.Nice); err != nil {
				_ = c.Process.Kill()
				_ = c.Wait()
			}
		}
		if err != nil {
			for _, s := range workers[:i] {
				_ = s.Process.Kill()
				_ = s.Wait()
			}
			stopCoordinator()
			return u, fmt.Errorf("start worker %d: %w", i, err)
		}
		workers[i] = c
	}
	stop := context.AfterFunc(ctx, func() {
		for _, c := range workers {
			_ = c.Process.Signal(syscall.SIGTERM)
		}
	})
	var errs []error
	for i, c := range workers {
		if err := c.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("worker %d: %w", i, err))
		}
		addCPU(c.ProcessState)
	}
	stop()
	stopCoordinator()
	u = Usage{WallSeconds: time.Since(start).Seconds(), CPUSeconds: float64(cpu.Load()) / 1e9}
	if err := errors.Join(errs...); err != nil {
		return u, err
	}
	return u, ctx.Err()
}

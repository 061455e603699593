package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// GossipTimings are the memberlist failure-detection and dissemination
// periods. A failed node is suspected after a failed probe (ProbeInterval,
// ProbeTimeout) and declared dead a suspicion timeout later (Suspicion);
// DetectionBound adds the terms up.
type GossipTimings struct {
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int
	// SuspicionMaxTimeoutMult stretches the suspicion timeout of a node
	// that only one member suspects (Lifeguard): it starts at this many
	// times the minimum and falls to the minimum as other members confirm
	// the suspicion. 1 keeps it at the minimum.
	SuspicionMaxTimeoutMult int
	GossipInterval          time.Duration
	GossipNodes             int
	PushPullInterval        time.Duration
	TCPTimeout              time.Duration
	GossipToTheDeadTime     time.Duration
	IndirectChecks          int
	RetransmitMult          int
}

// LANGossipTimings are the timings of nodes on a network (containers,
// machines of one cluster): a node that vanishes without a word (a killed
// container, a pulled cable, a machine powered off) is declared dead
// within DetectionBound(n): 1.15 s with three workers, 1.35 s with four,
// at most 2 s up to seven (n = workers + the coordinator); see
// docs/RELIABILITY.md for the arithmetic and the measurements. Probes go
// every 100 ms (a few hundred bytes per node and probe, nothing next to
// the data plane); a node has five probe intervals to refute a suspicion
// before it is declared dead, so a process that is slow for a moment
// (a garbage collection, a busy core) is not taken for dead.
func LANGossipTimings() GossipTimings {
	return GossipTimings{
		ProbeInterval:           100 * time.Millisecond,
		ProbeTimeout:            50 * time.Millisecond,
		SuspicionMult:           5,
		SuspicionMaxTimeoutMult: 1,
		GossipInterval:          50 * time.Millisecond,
		GossipNodes:             3,
		PushPullInterval:        15 * time.Second,
		TCPTimeout:              2 * time.Second,
		GossipToTheDeadTime:     15 * time.Second,
		IndirectChecks:          3,
		RetransmitMult:          4,
	}
}

// LocalGossipTimings are timings for nodes on one machine: a killed node
// is declared dead in two to three seconds. They stay patient enough that
// a machine whose cores are oversubscribed (several workers training on two
// cores) does not take a slow answer for a death: a killed worker is
// noticed sooner anyway, through its broken connections.
func LocalGossipTimings() GossipTimings {
	return GossipTimings{
		ProbeInterval:           500 * time.Millisecond,
		ProbeTimeout:            400 * time.Millisecond,
		SuspicionMult:           4,
		SuspicionMaxTimeoutMult: memberlist.DefaultLANConfig().SuspicionMaxTimeoutMult,
		GossipInterval:          100 * time.Millisecond,
		GossipNodes:             3,
		PushPullInterval:        5 * time.Second,
		TCPTimeout:              time.Second,
		GossipToTheDeadTime:     5 * time.Second,
		IndirectChecks:          2,
		RetransmitMult:          3,
	}
}

// Suspicion is the suspicion timeout of a cluster of n nodes, memberlist's
// rule: the minimum SuspicionMult·max(1, log10 n)·ProbeInterval, stretched
// to SuspicionMaxTimeoutMult times that when further confirmations are
// expected (k = SuspicionMult−2 ≥ 1 other suspecters, n−2 ≥ k) and none
// come. It returns the longest.
func (t GossipTimings) Suspicion(n int) time.Duration {
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	lo := time.Duration(float64(t.SuspicionMult) * scale * float64(t.ProbeInterval))
	if k := t.SuspicionMult - 2; k >= 1 && n-2 >= k && t.SuspicionMaxTimeoutMult > 1 {
		return time.Duration(t.SuspicionMaxTimeoutMult) * lo
	}
	return lo
}

// DetectionBound is the longest time, in a cluster of n nodes whose
// probing members are healthy, from the moment a node vanishes to the
// moment every member that hears the news declares it dead:
//
//	T(n) = (2n−3)·I    until some member probes it: each member probes the
//	                   others in turn, one per interval I, in an order
//	                   shuffled every round, so the gap between two probes
//	                   of one node by one member is at most 2(n−1)−1
//	                   intervals (with n−1 members probing it is about one
//	                   interval in practice);
//	     + I           the failed probe: no ack within ProbeTimeout, then
//	                   indirect and TCP probes until the interval ends;
//	     + S(n)        the suspicion timeout (Suspicion);
//	     + G           the dead message's gossip, one GossipInterval.
//
// A member whose own probes go unanswered stretches its interval up to
// eight times (memberlist's awareness); the bound assumes it does not.
func (t GossipTimings) DetectionBound(n int) time.Duration {
	n = max(n, 2)
	return time.Duration(2*n-3)*t.ProbeInterval + t.ProbeInterval + t.Suspicion(n) + t.GossipInterval
}

func (t GossipTimings) validate() error {
	if t.ProbeInterval <= 0 || t.ProbeTimeout <= 0 || t.GossipInterval <= 0 || t.PushPullInterval <= 0 ||
		t.TCPTimeout <= 0 || t.GossipToTheDeadTime <= 0 {
		return fmt.Errorf("gossip timings: every period must be positive: %+v", t)
	}
	if t.ProbeTimeout >= t.ProbeInterval {
		return fmt.Errorf("gossip timings: ProbeTimeout %v must be below ProbeInterval %v", t.ProbeTimeout, t.ProbeInterval)
	}
	if t.SuspicionMult < 1 || t.SuspicionMaxTimeoutMult < 1 || t.GossipNodes < 1 || t.IndirectChecks < 0 || t.RetransmitMult < 1 {
		return fmt.Errorf("gossip timings: SuspicionMult, SuspicionMaxTimeoutMult, GossipNodes and RetransmitMult must be at least 1: %+v", t)
	}
	return nil
}

// GossipConfig configures one memberlist node.
type GossipConfig struct {
	// Name is the node's name, unique in the cluster. A worker uses the id
	// returned by Join, so that the coordinator can map gossip events to
	// workers.
	Name string
	// BindAddr is the IP to bind, BindPort the port (0: a free port, the
	// same for UDP and TCP).
	BindAddr string
	BindPort int
	// AdvertiseAddr is the IP other nodes reach this one at (empty:
	// BindAddr); AdvertisePort its port (0: the bound port).
	AdvertiseAddr string
	AdvertisePort int
	// Seeds are host:port addresses of nodes to join at start.
	Seeds   []string
	Timings GossipTimings
	// SecretKey, when set, encrypts gossip (16, 24 or 32 bytes).
	SecretKey []byte
	// OnJoin and OnLeave, when set, are called when a node joins and when
	// it leaves or is declared dead. They are called one at a time, must
	// not block, and must not call methods of the Gossip.
	OnJoin  func(name, addr string)
	OnLeave func(name, addr string)
	// Logger receives memberlist's logs (nil: slog.Default()).
	Logger *slog.Logger
}

// DefaultLANGossipConfig returns a node named name, bound to all
// interfaces on memberlist's port with LAN timings. AdvertiseAddr must be
// set before start.
func DefaultLANGossipConfig(name string) GossipConfig {
	return GossipConfig{Name: name, BindAddr: "0.0.0.0", BindPort: 7946, Timings: LANGossipTimings()}
}

// DefaultLocalGossipConfig returns a node named name on 127.0.0.1, a free
// port and fast timings.
func DefaultLocalGossipConfig(name string) GossipConfig {
	return GossipConfig{Name: name, BindAddr: "127.0.0.1", BindPort: 0, Timings: LocalGossipTimings()}
}

// Gossip is a running memberlist node.
type Gossip struct {
	ml   *memberlist.Memberlist
	once sync.Once
	err  error
}

// StartGossip starts a memberlist node and joins cfg.Seeds, if any. A
// failure to reach every seed is an error; the node is shut down then.
func StartGossip(cfg GossipConfig) (*Gossip, error) {
	if cfg.Name == "" {
		return nil, errors.New("start gossip: empty node name")
	}
	if err := cfg.Timings.validate(); err != nil {
		return nil, fmt.Errorf("start gossip %s: %w", cfg.Name, err)
	}
	bind := net.ParseIP(cfg.BindAddr)
	if bind == nil {
		return nil, fmt.Errorf("start gossip %s: BindAddr %q is not an IP address", cfg.Name, cfg.BindAddr)
	}
	if cfg.AdvertiseAddr == "" && bind.IsUnspecified() {
		return nil, fmt.Errorf("start gossip %s: BindAddr %s is unspecified: set AdvertiseAddr", cfg.Name, cfg.BindAddr)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = cfg.BindPort
	}
	t := cfg.Timings
	mc.ProbeInterval, mc.ProbeTimeout, mc.SuspicionMult = t.ProbeInterval, t.ProbeTimeout, t.SuspicionMult
	mc.SuspicionMaxTimeoutMult = t.SuspicionMaxTimeoutMult
	mc.GossipInterval, mc.GossipNodes, mc.PushPullInterval = t.GossipInterval, t.GossipNodes, t.PushPullInterval
	mc.TCPTimeout, mc.GossipToTheDeadTime = t.TCPTimeout, t.GossipToTheDeadTime
	mc.IndirectChecks, mc.RetransmitMult = t.IndirectChecks, t.RetransmitMult
	mc.SecretKey = cfg.SecretKey
	mc.DNSConfigPath = ""
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	mc.Logger = log.New(&slogWriter{log: logger.With("gossip", cfg.Name)}, "", 0)
	mc.LogOutput = nil
	if cfg.OnJoin != nil || cfg.OnLeave != nil {
		mc.Events = &gossipEvents{onJoin: cfg.OnJoin, onLeave: cfg.OnLeave}
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start gossip %s on %s: %w", cfg.Name,
			net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.BindPort)), err)
	}
	g := &Gossip{ml: ml}
	if len(cfg.Seeds) > 0 {
		if _, err := g.Join(cfg.Seeds); err != nil {
			_ = g.Shutdown()
			return nil, err
		}
	}
	return g, nil
}

// Addr returns the host:port other nodes join this one at.
func (g *Gossip) Addr() string {
	n := g.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Name returns the node's name.
func (g *Gossip) Name() string { return g.ml.LocalNode().Name }

// Join contacts the given nodes and returns how many answered.
func (g *Gossip) Join(seeds []string) (int, error) {
	n, err := g.ml.Join(seeds)
	if err != nil {
		return n, fmt.Errorf("gossip %s: join %v: %w", g.Name(), seeds, err)
	}
	return n, nil
}

// Members returns the names of the nodes this node believes alive,
// itself included.
func (g *Gossip) Members() []string {
	var names []string
	for _, n := range g.ml.Members() {
		names = append(names, n.Name)
	}
	return names
}

// Leave announces a graceful departure and waits up to timeout for it to
// spread; the node keeps running until Shutdown.
func (g *Gossip) Leave(timeout time.Duration) error {
	if err := g.ml.Leave(timeout); err != nil {
		return fmt.Errorf("gossip %s: leave: %w", g.Name(), err)
	}
	return nil
}

// Shutdown stops the node without announcing it: the others detect it as
// failed. Call Leave first for a graceful exit. Safe to call twice.
func (g *Gossip) Shutdown() error {
	g.once.Do(func() {
		if err := g.ml.Shutdown(); err != nil {
			g.err = fmt.Errorf("gossip shutdown: %w", err)
		}
	})
	return g.err
}

// Close leaves (waiting up to timeout or ctx) and shuts down.
func (g *Gossip) Close(ctx context.Context, timeout time.Duration) error {
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	var errLeave error
	if timeout > 0 {
		errLeave = g.Leave(timeout)
	}
	return errors.Join(errLeave, g.Shutdown())
}

type gossipEvents struct {
	onJoin, onLeave func(name, addr string)
}

func (e *gossipEvents) NotifyJoin(n *memberlist.Node) {
	if e.onJoin != nil {
		e.onJoin(n.Name, n.Address())
	}
}

func (e *gossipEvents) NotifyLeave(n *memberlist.Node) {
	if e.onLeave != nil {
		e.onLeave(n.Name, n.Address())
	}
}

func (e *gossipEvents) NotifyUpdate(*memberlist.Node) {}

// slogWriter turns memberlist's "[LEVEL] memberlist: text" lines into slog
// records.
type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(p)
	level := slog.LevelInfo
	for _, l := range []struct {
		tag   string
		level slog.Level
	}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}} {
		if bytes.HasPrefix(line, []byte(l.tag)) {
			level = l.level
			line = bytes.TrimSpace(line[len(l.tag):])
			break
		}
	}
	line = bytes.TrimPrefix(line, []byte("memberlist: "))
	w.log.Log(context.Background(), level, string(line))
	return len(p), nil
}

var _ io.Writer = (*slogWriter)(nil)

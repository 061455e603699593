package coordinator

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Config configures a coordinator Server. Start from DefaultLANConfig or
// DefaultLocalConfig and change what differs.
type Config struct {
	// JobID names the run; every assignment carries it.
	JobID string

	// MinWorkers is the least number of workers a generation trains with;
	// MaxWorkers the most.
	MinWorkers int
	MaxWorkers int
	// JoinTimeout bounds the wait for MinWorkers before the first
	// generation (zero: wait forever); JoinSettle is how long the
	// coordinator keeps collecting workers, up to MaxWorkers, once
	// MinWorkers have joined.
	JoinTimeout time.Duration
	JoinSettle  time.Duration
	// RendezvousTimeout bounds a pause below MinWorkers; then the run
	// checkpoints and stops (zero: wait forever).
	RendezvousTimeout time.Duration
	// WatchGrace is how long a joined worker may be without an open
	// Watch stream before it is declared dead.
	WatchGrace time.Duration
	// Keepalive is the idle time after which the server pings a worker's
	// connection, and how long it waits for the answer before closing it
	// (which breaks the worker's Watch stream). At least one second.
	Keepalive time.Duration
	// StopGrace is how long Serve waits, once the run has stopped, for
	// the workers to leave.
	StopGrace time.Duration
	// LogInterval is the period of the progress log line (zero: none).
	LogInterval time.Duration

	// BindAddr is the IP both listeners bind to; AdvertiseAddr the IP
	// workers reach them at (empty: BindAddr, which must then not be
	// unspecified).
	BindAddr      string
	AdvertiseAddr string
	// GRPCPort and GossipPort are the listeners' ports (0: any free one).
	GRPCPort   int
	GossipPort int
	// DisableGossip runs without a memberlist node: dead workers are then
	// only noticed through their Watch streams and explicit reports.
	DisableGossip bool
	// Gossip holds the memberlist timings.
	Gossip GossipTimings
	// GossipKey, when set, encrypts gossip (16, 24 or 32 bytes, AES).
	GossipKey []byte

	// Token, when set, is the shared secret every request must carry as
	// "authorization: Bearer <token>".
	Token string
	// TLS, when set, serves gRPC over TLS with its certificate; with
	// ClientAuth tls.RequireAndVerifyClientCert, workers must present a
	// certificate signed by ClientCAs (mutual TLS).
	TLS *tls.Config

	// RunConfig is handed to every worker in its assignments.
	RunConfig []byte
	// Fingerprint is the run's configuration fingerprint; when empty the
	// first worker's is taken.
	Fingerprint Fingerprint
	// Resume, when set, is the checkpoint a run starts from when no worker
	// holds a newer state.
	Resume *Checkpoint
	// WorkerIDPrefix starts every worker id (empty: "w" and a tag of the
	// coordinator's start time, so that a restarted coordinator never
	// reuses the ids, which are also gossip node names, of the last one).
	WorkerIDPrefix string

	// Logger receives the coordinator's logs (nil: slog.Default()).
	Logger *slog.Logger
}

// DefaultLANConfig returns settings for workers spread over a local
// network: LANGossipTimings (a vanished worker declared dead within 2 s)
// and patient timeouts for the control stream. It binds all
// interfaces, so AdvertiseAddr must be set to the address workers reach.
func DefaultLANConfig() Config {
	return Config{
		JobID:             "infonce",
		MinWorkers:        1,
		MaxWorkers:        1,
		JoinTimeout:       10 * time.Minute,
		JoinSettle:        5 * time.Second,
		RendezvousTimeout: 5 * time.Minute,
		WatchGrace:        15 * time.Second,
		Keepalive:         10 * time.Second,
		StopGrace:         time.Minute,
		LogInterval:       30 * time.Second,
		BindAddr:          "0.0.0.0",
		GRPCPort:          7950,
		GossipPort:        7946,
		Gossip:            LANGossipTimings(),
	}
}

// DefaultLocalConfig returns settings for every process on one machine:
// loopback addresses, free ports and fast failure detection.
func DefaultLocalConfig() Config {
	return Config{
		JobID:             "infonce",
		MinWorkers:        1,
		MaxWorkers:        1,
		JoinTimeout:       time.Minute,
		JoinSettle:        200 * time.Millisecond,
		RendezvousTimeout: 30 * time.Second,
		WatchGrace:        500 * time.Millisecond,
		Keepalive:         time.Second,
		StopGrace:         5 * time.Second,
		LogInterval:       5 * time.Second,
		BindAddr:          "127.0.0.1",
		GRPCPort:          0,
		GossipPort:        0,
		Gossip:            LocalGossipTimings(),
	}
}

func (c Config) rendezvous() RendezvousConfig {
	return RendezvousConfig{
		JobID:             c.JobID,
		MinWorkers:        c.MinWorkers,
		MaxWorkers:        c.MaxWorkers,
		JoinTimeout:       c.JoinTimeout,
		JoinSettle:        c.JoinSettle,
		RendezvousTimeout: c.RendezvousTimeout,
		RunConfig:         c.RunConfig,
		Fingerprint:       c.Fingerprint,
		Resume:            c.Resume,
		IDPrefix:          c.WorkerIDPrefix,
		WatchGrace:        c.WatchGrace,
	}
}

func (c Config) validate() error {
	var errs []error
	if err := c.rendezvous().validate(); err != nil {
		errs = append(errs, err)
	}
	if c.WatchGrace <= 0 {
		errs = append(errs, fmt.Errorf("WatchGrace = %v: must be positive", c.WatchGrace))
	}
	if c.Keepalive < time.Second {
		errs = append(errs, fmt.Errorf("Keepalive = %v: must be at least 1s", c.Keepalive))
	}
	if c.StopGrace < 0 || c.LogInterval < 0 {
		errs = append(errs, fmt.Errorf("negative StopGrace (%v) or LogInterval (%v)", c.StopGrace, c.LogInterval))
	}
	if net.ParseIP(c.BindAddr) == nil {
		errs = append(errs, fmt.Errorf("BindAddr %q is not an IP address", c.BindAddr))
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		errs = append(errs, fmt.Errorf("AdvertiseAddr %q is not an IP address", c.AdvertiseAddr))
	}
	if c.AdvertiseAddr == "" && net.ParseIP(c.BindAddr) != nil && net.ParseIP(c.BindAddr).IsUnspecified() {
		errs = append(errs, fmt.Errorf("BindAddr %s is unspecified: set AdvertiseAddr to the address workers reach", c.BindAddr))
	}
	if c.GRPCPort < 0 || c.GRPCPort > 65535 || c.GossipPort < 0 || c.GossipPort > 65535 {
		errs = append(errs, fmt.Errorf("port out of range (gRPC %d, gossip %d)", c.GRPCPort, c.GossipPort))
	}
	if !c.DisableGossip {
		if err := c.Gossip.validate(); err != nil {
			errs = append(errs, err)
		}
		switch len(c.GossipKey) {
		case 0, 16, 24, 32:
		default:
			errs = append(errs, fmt.Errorf("GossipKey has %d bytes: need 16, 24 or 32", len(c.GossipKey)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("coordinator config: %w", err)
	}
	return nil
}

func (c Config) advertise() string {
	if c.AdvertiseAddr != "" {
		return c.AdvertiseAddr
	}
	return c.BindAddr
}

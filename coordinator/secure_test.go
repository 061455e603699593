package coordinator

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infonce/infonce/internal/tlstest"
)

// A memberlist node without the cluster's key, or with another key, is not
// admitted; one with the key is.
func TestGossipKeyRefusesStrangers(t *testing.T) {
	defer checkNoLeaks(t)()
	key := []byte("0123456789abcdef0123456789abcdef")
	start := func(name string, key []byte, seeds []string) (*Gossip, error) {
		cfg := DefaultLocalGossipConfig(name)
		cfg.SecretKey, cfg.Seeds, cfg.Logger = key, seeds, quietLogger(t)
		cfg.Timings.TCPTimeout = 300 * time.Millisecond
		return StartGossip(cfg)
	}
	a, err := start("a", key, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	tests := []struct {
		name  string
		key   []byte
		admit bool
	}{
		{"no key", nil, false},
		{"wrong key", []byte("fedcba9876543210fedcba9876543210"), false},
		{"short wrong key", []byte("0123456789abcdef"), false},
		{"the key", key, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := start("n-"+strings.ReplaceAll(tc.name, " ", "-"), tc.key, []string{a.Addr()})
			if g != nil {
				defer g.Shutdown()
			}
			if tc.admit != (err == nil) {
				t.Fatalf("join: %v, want admitted=%v", err, tc.admit)
			}
			want := 1
			if tc.admit {
				want = 2
			}
			time.Sleep(100 * time.Millisecond)
			if got := len(a.Members()); got != want {
				t.Fatalf("members %v, want %d", a.Members(), want)
			}
			if tc.admit {
				g.Leave(time.Second)
			}
		})
	}
}

// The control plane over mutual TLS with a token: a worker with both joins;
// a wrong token, a certificate of another CA, or no TLS are refused with a
// clear error, quickly.
func TestControlPlaneTLSAndToken(t *testing.T) {
	defer checkNoLeaks(t)()
	ca, other := tlstest.NewCA(t, "run CA"), tlstest.NewCA(t, "other CA")
	srvPair := ca.Issue(t, "coordinator")
	cfg := DefaultLocalConfig()
	cfg.DisableGossip, cfg.Logger, cfg.MaxWorkers = true, quietLogger(t), 4
	cfg.Token, cfg.TLS = "s3", tlstest.ServerConfig(srvPair, ca)
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	tests := []struct {
		name  string
		token string
		opts  []ClientOption
		check func(error) bool
	}{
		{"admitted", "s3", []ClientOption{WithTLS(tlstest.ClientConfig(ca.Issue(t, "w"), ca))}, func(err error) bool { return err == nil }},
		{"wrong token", "guess", []ClientOption{WithTLS(tlstest.ClientConfig(ca.Issue(t, "w"), ca))},
			func(err error) bool {
				return status.Code(errors.Unwrap(err)) == codes.Unauthenticated && strings.Contains(err.Error(), "token")
			}},
		{"no token", "", []ClientOption{WithTLS(tlstest.ClientConfig(ca.Issue(t, "w"), ca))},
			func(err error) bool { return strings.Contains(err.Error(), "missing bearer token") }},
		{"certificate of another CA", "s3", []ClientOption{WithTLS(tlstest.ClientConfig(other.Issue(t, "x"), ca))},
			func(err error) bool { return errors.Is(err, ErrTLS) }},
		{"no client certificate", "s3", []ClientOption{WithTLS(tlstest.ClientConfig(tlstest.Pair{}, ca))},
			func(err error) bool { return errors.Is(err, ErrTLS) }},
		{"server not trusted", "s3", []ClientOption{WithTLS(tlstest.ClientConfig(ca.Issue(t, "w"), other))},
			func(err error) bool { return errors.Is(err, ErrTLS) }},
		{"plain text", "s3", nil, func(err error) bool { return err != nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer ccancel()
			c, err := Dial(cctx, srv.Addr(), tc.token, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			_, err = c.Join(cctx, JoinRequest{Name: tc.name, DataAddr: "127.0.0.1:1"})
			if !tc.check(err) {
				t.Fatalf("join: %v", err)
			}
			if err != nil && tc.opts != nil && time.Since(start) > 2*time.Second {
				t.Errorf("refusal took %v: it must not be retried", time.Since(start))
			}
			if err == nil {
				_ = c.Leave(cctx, "test done")
			}
		})
	}
}

// Messages above MaxMessageBytes are refused without harming the server.
func TestControlPlaneMessageBound(t *testing.T) {
	defer checkNoLeaks(t)()
	cfg := DefaultLocalConfig()
	cfg.DisableGossip, cfg.Logger, cfg.MaxWorkers = true, quietLogger(t), 2
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		<-served
	}()
	cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer ccancel()
	c, err := Dial(cctx, srv.Addr(), "", WithDialOptions(grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Join(cctx, JoinRequest{Name: strings.Repeat("x", MaxMessageBytes+1), DataAddr: "127.0.0.1:1"})
	if status.Code(errors.Unwrap(err)) != codes.ResourceExhausted {
		t.Fatalf("oversized join: %v, want ResourceExhausted", err)
	}
	if _, err := c.Join(cctx, JoinRequest{Name: "ok", DataAddr: "127.0.0.1:1"}); err != nil {
		t.Fatalf("join after the oversized one: %v", err)
	}
	_ = c.Leave(cctx, "done")
}

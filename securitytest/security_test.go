package securitytest

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/dataplane"
	"github.com/infonce/infonce/coordinator"
	"github.com/infonce/infonce/internal/tlstest"
	"github.com/infonce/infonce/worker"
)

// dataAddrs returns the workers' data-plane addresses.
func dataAddrs(srv *coordinator.Server) []string {
	var addrs []string
	for _, m := range srv.Status().Members {
		if m.DataAddr != "" {
			addrs = append(addrs, m.DataAddr)
		}
	}
	return addrs
}

// every runs f every period until ctx ends and returns how often it ran.
func every(ctx context.Context, period time.Duration, f func()) int {
	n := 0
	for {
		f()
		n++
		select {
		case <-ctx.Done():
			return n
		case <-time.After(period):
		}
	}
}

// TestIntrudersAreRefused: while two workers train, processes without the
// run's token, cluster key or certificate try to join the coordinator, to
// link into the ring and to gossip. Each is refused with a clear error and
// the run ends with the losses of an undisturbed run.
func TestIntrudersAreRefused(t *testing.T) {
	for _, mode := range []struct {
		name string
		tls  bool
	}{{"token and cluster key", false}, {"mutual TLS, token and cluster key", true}} {
		t.Run(mode.name, func(t *testing.T) {
			sec := newSecrets(t, mode.tls)
			want := baseline(t)
			var refused atomic.Int64
			got := run(t, sec, func(ctx context.Context, c *cluster) {
				refused.Add(int64(intruderWorkers(t, ctx, c)))
				every(ctx, 50*time.Millisecond, func() {
					refused.Add(int64(intrude(t, ctx, c)))
				})
			})
			sameLosses(t, got, want)
			if refused.Load() == 0 {
				t.Fatal("no intrusion was attempted during the run")
			}
			t.Logf("%d intrusions refused", refused.Load())
		})
	}
}

// intruderWorkers starts whole workers with a wrong token and, under TLS,
// with a certificate of another CA: each must stop at once with a clear
// error. It returns the number of refusals.
func intruderWorkers(t *testing.T, ctx context.Context, c *cluster) int {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	type intruder struct {
		what   string
		token  string
		client *tls.Config
		want   string
	}
	list := []intruder{{"wrong token", "guess", c.sec.client, "wrong bearer token"}}
	if c.sec.ca != nil {
		list = append(list, intruder{"foreign certificate", c.sec.token,
			tlstest.ClientConfig(tlstest.NewCA(t, "stranger").Issue(t, "x"), c.sec.ca), coordinator.ErrTLS.Error()})
	}
	n := 0
	for _, in := range list {
		_, err := worker.RunMember(ctx, worker.MemberOptions{
			Coordinator: c.srv.Addr(), Token: in.token, Name: "intruder", DataBind: "127.0.0.1:0",
			TLSServer: c.sec.server, TLSClient: in.client, Out: t.TempDir(), Logger: quiet(),
		})
		if ctx.Err() != nil {
			return n
		}
		if err == nil || !strings.Contains(err.Error(), in.want) {
			t.Errorf("worker with a %s: %v, want an error with %q", in.what, err, in.want)
			continue
		}
		n++
	}
	return n
}

// intrude makes one attempt of each kind and checks its refusal; it
// returns the number of refusals seen.
func intrude(t *testing.T, ctx context.Context, c *cluster) int {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if ctx.Err() != nil {
		return 0
	}
	n := 0
	// Control plane: a wrong token; under TLS also a certificate of
	// another CA.
	type attempt struct {
		token string
		opts  []coordinator.ClientOption
		check func(error) bool
		what  string
	}
	stranger := tlstest.NewCA(t, "stranger CA")
	var attempts []attempt
	creds := func(cfg *tls.Config) []coordinator.ClientOption {
		if cfg == nil {
			return nil
		}
		return []coordinator.ClientOption{coordinator.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(cfg)))}
	}
	attempts = append(attempts, attempt{"guess", creds(c.sec.client), func(err error) bool {
		return status.Code(errors.Unwrap(err)) == codes.Unauthenticated
	}, "wrong token"})
	var foreign *tls.Config
	if c.sec.ca != nil {
		foreign = tlstest.ClientConfig(stranger.Issue(t, "intruder"), c.sec.ca)
		attempts = append(attempts, attempt{c.sec.token, creds(foreign), func(err error) bool { return errors.Is(err, coordinator.ErrTLS) }, "foreign certificate"})
	}
	for _, a := range attempts {
		cl, err := coordinator.Dial(ctx, c.srv.Addr(), a.token, a.opts...)
		if err != nil {
			t.Error(err)
			continue
		}
		_, err = cl.Join(ctx, coordinator.JoinRequest{Name: "intruder", DataAddr: "127.0.0.1:1"})
		cl.Close()
		if ctx.Err() != nil {
			return n
		}
		if !a.check(err) {
			t.Errorf("intruder with a %s joined or failed unclearly: %v", a.what, err)
		} else {
			n++
		}
	}
	// Data plane: link into the ring as rank 0 of a ring of two, for the
	// current generation and the next one, with a wrong token (and under
	// TLS with a foreign certificate).
	gen := c.srv.Status().Current.Number
	for _, victim := range dataAddrs(c.srv) {
		for _, g := range []uint64{gen, gen + 1} {
			own, err := dataplane.Listen("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			cfg := allreduce.Config{JobID: jobID, Generation: g, Rank: 0, Peers: []string{own.Addr(), victim},
				Token: "guess", TLS: c.sec.client, Timeout: time.Second}
			if foreign != nil {
				cfg.Token, cfg.TLS = c.sec.token, foreign
			}
			r, err := dataplane.NewRing(ctx, own, cfg)
			own.Close()
			if r != nil {
				r.Close()
			}
			if ctx.Err() != nil {
				return n
			}
			if !errors.Is(err, allreduce.ErrUnauthenticated) {
				t.Errorf("intruder linking to %s (generation %d): %v, want ErrUnauthenticated", victim, g, err)
			} else {
				n++
			}
		}
	}
	// Gossip without the key, and with another key.
	for _, key := range [][]byte{nil, []byte("fedcba9876543210")} {
		gc := coordinator.DefaultLocalGossipConfig("intruder")
		gc.Seeds, gc.SecretKey, gc.Logger = []string{c.srv.GossipAddr()}, key, quiet()
		gc.Timings.TCPTimeout = 300 * time.Millisecond
		g, err := coordinator.StartGossip(gc)
		if err == nil {
			g.Shutdown()
			t.Errorf("gossip node with key %q was admitted", key)
		} else {
			n++
		}
	}
	for _, m := range c.srv.Status().Gossip {
		if strings.HasPrefix(m, "intruder") {
			t.Errorf("intruder %s is a gossip member", m)
		}
	}
	return n
}

// TestGarbageDoesNotDisturbRun sends garbage to every listening port while
// two workers train: random bytes, an HTTP request, huge length prefixes,
// a TLS ClientHello, a handshake of another protocol version. Every such
// connection is dropped and the run ends with the losses of an
// undisturbed run.
func TestGarbageDoesNotDisturbRun(t *testing.T) {
	for _, mode := range []struct {
		name string
		sec  func(*testing.T) secrets
	}{
		{"no security", func(*testing.T) secrets { return secrets{} }},
		{"mutual TLS, token and cluster key", func(t *testing.T) secrets { return newSecrets(t, true) }},
	} {
		t.Run(mode.name, func(t *testing.T) {
			sec := mode.sec(t)
			want := baseline(t)
			var sent atomic.Int64
			got := run(t, sec, func(ctx context.Context, c *cluster) {
				rng := rand.New(rand.NewPCG(1, 2))
				every(ctx, 20*time.Millisecond, func() {
					targets := append([]string{c.srv.Addr(), c.srv.GossipAddr()}, dataAddrs(c.srv)...)
					for _, addr := range targets {
						for _, p := range payloads(rng) {
							sendTCP(ctx, addr, p)
							sent.Add(1)
						}
						sendClientHello(ctx, addr)
					}
					for _, p := range payloads(rng) {
						sendUDP(c.srv.GossipAddr(), p)
					}
				})
			})
			sameLosses(t, got, want)
			if sent.Load() == 0 {
				t.Fatal("no garbage was sent during the run")
			}
			t.Logf("%d garbage connections", sent.Load())
		})
	}
}

// payloads returns one of each kind of garbage.
func payloads(rng *rand.Rand) [][]byte {
	random := make([]byte, 1+rng.IntN(4096))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	// The plain TCP data plane's preface, then a frame header claiming
	// 4 GiB.
	hugeFrame := append([]byte("IRNG"), make([]byte, 12)...)
	binary.LittleEndian.PutUint32(hugeFrame[4+8:], 0xffffffff)
	// A hello of protocol version 99 in a well-formed frame.
	hello := []byte("IRNG")
	hello = binary.LittleEndian.AppendUint16(hello, 99)
	hello = append(hello, 1, 0)
	hello = binary.LittleEndian.AppendUint64(hello, 1)
	hello = append(hello, make([]byte, 12)...)
	hello = append(hello, 3, 0, 's', 'e', 'c', 0, 0)
	version := append([]byte("IRNG"), make([]byte, 12)...)
	binary.LittleEndian.PutUint32(version[4+8:], uint32(len(hello)))
	version = append(version, hello...)
	// The HTTP/2 preface, then a frame header claiming 16 MiB.
	h2 := append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0xff, 0xff, 0xff, 0x00, 0, 0, 0, 0, 0)
	// memberlist's stream: a compound message claiming a huge count.
	gossip := []byte{7, 0xff, 0xff, 0xff, 0xff}
	return [][]byte{random, []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), hugeFrame, version, h2, gossip, {0xff, 0xff, 0xff, 0xff}}
}

func sendTCP(ctx context.Context, addr string, p []byte) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(200 * time.Millisecond))
	conn.Write(p)
	var buf [256]byte
	conn.Read(buf[:]) // whatever the server answers, or its close
}

func sendClientHello(ctx context.Context, addr string) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(200 * time.Millisecond))
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
	_ = tc.Handshake() // refused by plain ports; a TLS port wants a certificate and a token
}

func sendUDP(addr string, p []byte) {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return
	}
	defer conn.Close()
	conn.Write(p)
}

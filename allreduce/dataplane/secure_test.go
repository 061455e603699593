package dataplane

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infonce/infonce/internal/tlstest"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/internal/link"

	"github.com/infonce/infonce/allreduce/tcp"

	"github.com/infonce/infonce/allreduce/grpc"
)

// secureRings builds a ring of len(cfgs) over servers started with opts[i];
// it returns the rings (nil where NewRing failed) and the errors.
func secureRings(t *testing.T, timeout time.Duration, opts [][]ServerOption, cfgs []allreduce.Config) ([]*allreduce.Ring, []error) {
	t.Helper()
	k := len(cfgs)
	srvs := make([]*Server, k)
	peers := make([]string, k)
	for i := range srvs {
		s, err := Listen("127.0.0.1:0", opts[i]...)
		if err != nil {
			t.Fatal(err)
		}
		srvs[i], peers[i] = s, s.Addr()
	}
	rings := make([]*allreduce.Ring, k)
	errs := make([]error, k)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := cfgs[i]
			c.Rank, c.Peers = i, peers
			rings[i], errs[i] = NewRing(ctx, srvs[i], c)
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, r := range rings {
			if r != nil {
				r.Close()
			}
		}
		for _, s := range srvs {
			s.Close()
		}
	})
	return rings, errs
}

func TestSecureRing(t *testing.T) {
	base := runtime.NumGoroutine()
	ca, other := tlstest.NewCA(t, "run CA"), tlstest.NewCA(t, "other CA")
	good, stranger := ca.Issue(t, "worker"), other.Issue(t, "stranger")
	mtlsServer := tlstest.ServerConfig(good, ca)
	cfg := func(transport, token string, tc *tls.Config) allreduce.Config {
		return allreduce.Config{JobID: "sec", Generation: 1, Timeout: 5 * time.Second, Transport: transport, Token: token, TLS: tc}
	}
	tests := []struct {
		name  string
		opts  [][]ServerOption
		cfgs  []allreduce.Config
		want  error  // nil: the ring works
		inErr string // text the error must hold
	}{
		{"token grpc", [][]ServerOption{{WithToken("s3")}, {WithToken("s3")}},
			[]allreduce.Config{cfg("grpc", "s3", nil), cfg("grpc", "s3", nil)}, nil, ""},
		{"token tcp", [][]ServerOption{{WithToken("s3")}, {WithToken("s3")}},
			[]allreduce.Config{cfg("tcp", "s3", nil), cfg("tcp", "s3", nil)}, nil, ""},
		{"mtls and token", [][]ServerOption{{WithToken("s3"), WithTLS(mtlsServer)}, {WithToken("s3"), WithTLS(mtlsServer)}},
			[]allreduce.Config{cfg("grpc", "s3", tlstest.ClientConfig(good, ca)), cfg("grpc", "s3", tlstest.ClientConfig(good, ca))}, nil, ""},
		{"tls without client certificates", [][]ServerOption{{WithTLS(tlstest.ServerConfig(good, nil))}, {WithTLS(tlstest.ServerConfig(good, nil))}},
			[]allreduce.Config{cfg("grpc", "", tlstest.ClientConfig(tlstest.Pair{}, ca)), cfg("grpc", "", tlstest.ClientConfig(tlstest.Pair{}, ca))}, nil, ""},
		{"wrong token grpc", [][]ServerOption{{WithToken("s3")}, {WithToken("s3")}},
			[]allreduce.Config{cfg("grpc", "s3", nil), cfg("grpc", "other", nil)}, allreduce.ErrUnauthenticated, "token"},
		{"wrong token tcp", [][]ServerOption{{WithToken("s3")}, {WithToken("s3")}},
			[]allreduce.Config{cfg("tcp", "s3", nil), cfg("tcp", "other", nil)}, allreduce.ErrUnauthenticated, "token"},
		{"no token grpc", [][]ServerOption{{WithToken("s3")}, {WithToken("s3")}},
			[]allreduce.Config{cfg("grpc", "s3", nil), cfg("grpc", "", nil)}, allreduce.ErrDeadline, ""},
		{"certificate of another CA", [][]ServerOption{{WithTLS(mtlsServer)}, {WithTLS(mtlsServer)}},
			[]allreduce.Config{cfg("grpc", "", tlstest.ClientConfig(stranger, ca)), cfg("grpc", "", tlstest.ClientConfig(stranger, ca))}, allreduce.ErrUnauthenticated, "certificate"},
		{"server not trusted", [][]ServerOption{{WithTLS(mtlsServer)}, {WithTLS(mtlsServer)}},
			[]allreduce.Config{cfg("grpc", "", tlstest.ClientConfig(good, other)), cfg("grpc", "", tlstest.ClientConfig(good, other))}, allreduce.ErrUnauthenticated, "TLS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			timeout := 5 * time.Second
			if tc.want != nil {
				timeout = time.Second
			}
			rings, errs := secureRings(t, timeout, tc.opts, tc.cfgs)
			if tc.want == nil {
				mustAll(t, errs)
				errs = onAll(rings, func(r *allreduce.Ring) error {
					x := []float32{float32(r.Rank() + 1), 1}
					if err := r.AllReduce(context.Background(), x); err != nil {
						return err
					}
					if x[0] != 3 || x[1] != 2 {
						t.Errorf("rank %d: all-reduce gave %v, want [3 2]", r.Rank(), x)
					}
					return nil
				})
				mustAll(t, errs)
				return
			}
			refused := 0
			for i, err := range errs {
				if err == nil {
					continue
				}
				if errors.Is(err, tc.want) {
					refused++
					if !strings.Contains(err.Error(), tc.inErr) {
						t.Errorf("rank %d: %v does not mention %q", i, err, tc.inErr)
					}
				}
			}
			if refused == 0 {
				t.Fatalf("no rank was refused with %v: %v", tc.want, errs)
			}
		})
	}
	if err := validateForTest(allreduce.Config{TLS: &tls.Config{}, Transport: allreduce.TransportTCP}); err == nil {
		t.Error("TLS with the tcp transport was accepted")
	}
	checkGoroutines(t, base)
}

func validateForTest(c allreduce.Config) error { _, err := c.WithDefaults(1); return err }

// TestIntrudersDoNotDisturbRing: while a token-protected ring all-reduces,
// connections without the token, with a wrong one, and garbage are refused
// and the results stay exact.
func TestIntrudersDoNotDisturbRing(t *testing.T) {
	for _, kind := range []string{allreduce.TransportGRPC, allreduce.TransportTCP} {
		t.Run(kind, func(t *testing.T) {
			c := allreduce.Config{JobID: "sec", Generation: 2, Timeout: 5 * time.Second, Transport: kind, Token: "s3", ChunkBytes: 4096}
			rings, errs := secureRings(t, 5*time.Second, [][]ServerOption{{WithToken("s3")}, {WithToken("s3")}, {WithToken("s3")}}, []allreduce.Config{c, c, c})
			mustAll(t, errs)
			addr := rings[1].Config().Peers[1]
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				hello := link.Handshake{Version: link.ProtocolVersion, Kind: link.HelloKind, Generation: 3, From: 0, To: 1, Size: 3, JobID: "sec"}
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					bad := c
					bad.Token = "guess"
					if _, err := grpc.Dial(ctx, addr, hello, func(ctx context.Context, addr string) (net.Conn, error) { return dialConn(ctx, bad, addr) }); !errors.Is(err, allreduce.ErrUnauthenticated) {
						t.Errorf("intruder with a wrong token: %v, want allreduce.ErrUnauthenticated", err)
					}
					if _, err := tcp.Dial(ctx, addr, hello, func(ctx context.Context, addr string) (net.Conn, error) { return dialConn(ctx, bad, addr) }); !errors.Is(err, allreduce.ErrUnauthenticated) {
						t.Errorf("intruder on tcp with a wrong token: %v, want allreduce.ErrUnauthenticated", err)
					}
					if conn, err := net.Dial("tcp", addr); err == nil {
						conn.Write(append(link.Preface[:], hello.Encode()...)) // no token at all
						conn.Close()
					}
					cancel()
					time.Sleep(5 * time.Millisecond)
				}
			}()
			const n = 20000
			for it := range 30 {
				errs := onAll(rings, func(r *allreduce.Ring) error {
					x := make([]float32, n)
					for i := range x {
						x[i] = float32(r.Rank()*n + i + it)
					}
					if err := r.AllReduce(context.Background(), x); err != nil {
						return err
					}
					for i := range x {
						if want := float32(3*i + 3*it + 3*n); x[i] != want {
							t.Errorf("rank %d iteration %d element %d: %v, want %v", r.Rank(), it, i, x[i], want)
							return nil
						}
					}
					return nil
				})
				mustAll(t, errs)
			}
			close(stop)
			wg.Wait()
		})
	}
}

// FuzzAdmission feeds arbitrary bytes to a token-protected server's
// admission: it never panics, and only the one right answer is admitted.
func FuzzAdmission(f *testing.F) {
	f.Add([]byte("IAUT"), false)
	f.Add([]byte("IRNG\x00\x00"), false)
	f.Add(append([]byte("IAUT"), make([]byte, 40)...), true)
	f.Add([]byte("\x16\x03\x01\x00\xff"), true)
	f.Fuzz(func(t *testing.T, b []byte, answer bool) {
		s := &Server{logger: slog.New(slog.DiscardHandler), sec: serverSecurity{token: "s3"}}
		client, server := net.Pipe()
		defer client.Close()
		type result struct {
			head [4]byte
			ok   bool
		}
		done := make(chan result, 1)
		go func() {
			c, head, ok := s.admit(server)
			if ok {
				c.Close()
			}
			done <- result{head, ok}
		}()
		client.SetDeadline(time.Now().Add(2 * time.Second))
		go func() {
			// Answer the nonce with the right MAC when asked to; send b
			// either way.
			if answer && len(b) >= 4 && [4]byte(b[:4]) == authMagic {
				client.Write(authMagic[:])
				var nonce [authNonceBytes]byte
				if _, err := io.ReadFull(client, nonce[:]); err != nil {
					return
				}
				client.Write(authMAC("s3", nonce[:]))
				var st [1]byte
				io.ReadFull(client, st[:])
				client.Write(b[4:])
				client.Close()
				return
			}
			go io.Copy(io.Discard, client)
			client.Write(b)
			client.Close()
		}()
		r := <-done
		client.Close()
		rightAnswer := answer && len(b) >= 8 && [4]byte(b[:4]) == authMagic
		if r.ok && !rightAnswer {
			t.Fatalf("admitted %q without the right answer", b)
		}
		if rightAnswer && !r.ok {
			t.Fatalf("refused the right answer followed by %q", b[4:])
		}
	})
}

package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/internal/link"

	"github.com/infonce/infonce/allreduce/grpc"
	"github.com/infonce/infonce/allreduce/tcp"
)

// listenRegistered starts a server with a ring slot registered for job
// "job", generation 5, rank 1 of 3 (expecting rank 0 to dial in).
func listenRegistered(t *testing.T) (*Server, *slot) {
	t.Helper()
	srv, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	sl, err := srv.register(allreduce.Config{JobID: "job", Generation: 5, Rank: 1, Peers: []string{"a", "b", "c"}})
	if err != nil {
		t.Fatal(err)
	}
	return srv, sl
}

func dialHello(ctx context.Context, kind, addr string, h link.Handshake) error {
	if kind == allreduce.TransportTCP {
		o, err := tcp.Dial(ctx, addr, h, func(ctx context.Context, addr string) (net.Conn, error) {
			return dialConn(ctx, allreduce.Config{}, addr)
		})
		if err == nil {
			o.Close(false)
		}
		return err
	}
	o, err := grpc.Dial(ctx, addr, h, nil)
	if err == nil {
		o.Close(false)
	}
	return err
}

func TestHandshakeMismatchRefused(t *testing.T) {
	base := runtime.NumGoroutine()
	good := link.Handshake{Version: link.ProtocolVersion, Kind: link.HelloKind, Generation: 5, From: 0, To: 1, Size: 3, JobID: "job"}
	tests := []struct {
		name   string
		edit   func(*link.Handshake)
		want   error
		reason string
	}{
		{"version", func(h *link.Handshake) { h.Version = 99 }, allreduce.ErrHandshake, "protocol version 99"},
		{"job", func(h *link.Handshake) { h.JobID = "other" }, allreduce.ErrHandshake, `job id "other"`},
		{"stale generation", func(h *link.Handshake) { h.Generation = 4 }, allreduce.ErrGeneration, "generation 4"},
		{"wrong sender", func(h *link.Handshake) { h.From = 2 }, allreduce.ErrHandshake, "expecting rank 0"},
		{"wrong size", func(h *link.Handshake) { h.Size = 4 }, allreduce.ErrHandshake, "ring of 4"},
		{"not a hello", func(h *link.Handshake) { h.Kind = link.AcceptKind }, allreduce.ErrHandshake, "expected a hello"},
	}
	for _, kind := range []string{allreduce.TransportGRPC, allreduce.TransportTCP} {
		for _, tc := range tests {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				srv, sl := listenRegistered(t)
				h := good
				tc.edit(&h)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				err := dialHello(ctx, kind, srv.Addr(), h)
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.reason) {
					t.Fatalf("got %v, want %v mentioning %q", err, tc.want, tc.reason)
				}
				// the right hello is still accepted afterwards
				if err := dialHello(ctx, kind, srv.Addr(), good); err != nil {
					t.Fatalf("good hello after a refusal: %v", err)
				}
				select {
				case in := <-sl.in:
					in.Link.Close()
				case <-time.After(time.Second):
					t.Fatal("accepted link not delivered to the ring slot")
				}
			})
		}
	}
	checkGoroutines(t, base)
}

func TestNewRingJobMismatch(t *testing.T) {
	base := runtime.NumGoroutine()
	for _, kind := range []string{allreduce.TransportGRPC, allreduce.TransportTCP} {
		t.Run(kind, func(t *testing.T) {
			srvs := make([]*Server, 2)
			peers := make([]string, 2)
			for i := range srvs {
				s, err := Listen("127.0.0.1:0", WithParkTimeout(time.Second))
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				srvs[i], peers[i] = s, s.Addr()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for i := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := NewRing(ctx, srvs[i], allreduce.Config{JobID: fmt.Sprint("job", i), Rank: i, Peers: peers, Transport: kind})
					if err == nil {
						r.Close()
					}
					errs[i] = err
				}()
			}
			wg.Wait()
			for i, err := range errs {
				var pe *allreduce.PeerError
				if !errors.As(err, &pe) || pe.Op != "connect" {
					t.Fatalf("rank %d: %v, want a connect *allreduce.PeerError", i, err)
				}
			}
			if !errors.Is(errs[0], allreduce.ErrHandshake) || !strings.Contains(errs[0].Error(), "job id") {
				t.Fatalf("rank 0: %v, want a job id refusal", errs[0])
			}
		})
	}
	checkGoroutines(t, base)
}

func TestGenerationChange(t *testing.T) {
	base := runtime.NumGoroutine()
	for _, kind := range []string{allreduce.TransportGRPC, allreduce.TransportTCP} {
		t.Run(kind, func(t *testing.T) {
			const k = 3
			srvs := make([]*Server, k)
			peers := make([]string, k)
			for i := range srvs {
				s, err := Listen("127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				srvs[i], peers[i] = s, s.Addr()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			build := func(gen uint64, members []int) ([]*allreduce.Ring, []error) {
				rings := make([]*allreduce.Ring, len(members))
				errs := make([]error, len(members))
				ps := make([]string, len(members))
				for i, m := range members {
					ps[i] = peers[m]
				}
				var wg sync.WaitGroup
				for i, m := range members {
					wg.Add(1)
					go func() {
						defer wg.Done()
						rings[i], errs[i] = NewRing(ctx, srvs[m], allreduce.Config{JobID: "job", Generation: gen, Rank: i, Peers: ps, Transport: kind, Timeout: 2 * time.Second})
					}()
				}
				wg.Wait()
				return rings, errs
			}
			sum := func(rings []*allreduce.Ring) []error {
				return onAll(rings, func(r *allreduce.Ring) error {
					buf := []float32{1, 2, 3, 4, 5}
					if err := r.AllReduce(ctx, buf); err != nil {
						return err
					}
					if buf[4] != float32(5*len(rings)) {
						return fmt.Errorf("sum %v with %d ranks", buf, len(rings))
					}
					return nil
				})
			}
			g1, errs := build(1, []int{0, 1, 2})
			mustAll(t, errs)
			mustAll(t, sum(g1))
			// Worker 1 leaves: generation 2 has workers 2 and 0, in that order.
			g2, errs := build(2, []int{2, 0})
			mustAll(t, errs)
			defer closeAll(g2)
			mustAll(t, sum(g2))
			// The rings of generation 1 on workers 0 and 2 were superseded.
			for _, i := range []int{0, 2} {
				err := g1[i].Barrier(ctx)
				if !errors.Is(err, allreduce.ErrGeneration) {
					t.Fatalf("generation 1 ring of worker %d after generation 2: %v", i, err)
				}
			}
			closeAll(g1)
			// A late dial of generation 1 is refused as stale.
			err := dialHello(ctx, kind, peers[0], link.Handshake{Version: link.ProtocolVersion, Kind: link.HelloKind, Generation: 1, From: 2, To: 0, Size: 3, JobID: "job"})
			if !errors.Is(err, allreduce.ErrGeneration) {
				t.Fatalf("stale dial: %v", err)
			}
			// Registering an older generation is refused too.
			if _, err := NewRing(ctx, srvs[0], allreduce.Config{JobID: "job", Generation: 1, Rank: 0, Peers: peers[:1]}); !errors.Is(err, allreduce.ErrGeneration) {
				t.Fatalf("NewRing of an older generation: %v", err)
			}
			mustAll(t, sum(g2))
		})
	}
	checkGoroutines(t, base)
}

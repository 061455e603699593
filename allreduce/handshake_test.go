package allreduce

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/mem"
)

func TestHandshakeRoundTrip(t *testing.T) {
	tests := []handshake{
		{Version: 1, Kind: helloKind, Generation: 3, From: 1, To: 2, Size: 3, JobID: "job"},
		{Version: 1, Kind: refuseKind, Code: codeJob, JobID: strings.Repeat("j", maxJobID), Reason: strings.Repeat("r", maxReason)},
		{Version: 65535, Kind: acceptKind, Generation: 1<<64 - 1},
	}
	for _, h := range tests {
		got, err := decodeHandshake(h.encode())
		if err != nil || got != h {
			t.Fatalf("round trip of %+v: %+v, %v", h, got, err)
		}
	}
	bad := [][]byte{nil, []byte("IRNG"), append([]byte("XXXX"), make([]byte, 40)...)}
	h := tests[0].encode()
	bad = append(bad, h[:len(h)-1], append(h, 0), make([]byte, maxHandshake+1))
	for _, b := range bad {
		if _, err := decodeHandshake(b); !errors.Is(err, errMalformed) {
			t.Fatalf("decode of %q: %v, want malformed", b, err)
		}
	}
}

// listenRegistered starts a server with a ring slot registered for job
// "job", generation 5, rank 1 of 3 (expecting rank 0 to dial in).
func listenRegistered(t *testing.T) (*Server, *slot) {
	t.Helper()
	srv, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	sl, err := srv.register(Config{JobID: "job", Generation: 5, Rank: 1, Peers: []string{"a", "b", "c"}})
	if err != nil {
		t.Fatal(err)
	}
	return srv, sl
}

func dialHello(ctx context.Context, kind, addr string, h handshake) error {
	if kind == TransportTCP {
		o, err := dialTCP(ctx, addr, h, Config{}.dialConn)
		if err == nil {
			o.close(false)
		}
		return err
	}
	o, err := dialGRPC(ctx, addr, h)
	if err == nil {
		o.close(false)
	}
	return err
}

func TestHandshakeMismatchRefused(t *testing.T) {
	base := runtime.NumGoroutine()
	good := handshake{Version: ProtocolVersion, Kind: helloKind, Generation: 5, From: 0, To: 1, Size: 3, JobID: "job"}
	tests := []struct {
		name   string
		edit   func(*handshake)
		want   error
		reason string
	}{
		{"version", func(h *handshake) { h.Version = 99 }, ErrHandshake, "protocol version 99"},
		{"job", func(h *handshake) { h.JobID = "other" }, ErrHandshake, `job id "other"`},
		{"stale generation", func(h *handshake) { h.Generation = 4 }, ErrGeneration, "generation 4"},
		{"wrong sender", func(h *handshake) { h.From = 2 }, ErrHandshake, "expecting rank 0"},
		{"wrong size", func(h *handshake) { h.Size = 4 }, ErrHandshake, "ring of 4"},
		{"not a hello", func(h *handshake) { h.Kind = acceptKind }, ErrHandshake, "expected a hello"},
	}
	for _, kind := range []string{TransportGRPC, TransportTCP} {
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
					in.link.close()
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
	for _, kind := range []string{TransportGRPC, TransportTCP} {
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
					r, err := NewRing(ctx, srvs[i], Config{JobID: fmt.Sprint("job", i), Rank: i, Peers: peers, Transport: kind})
					if err == nil {
						r.Close()
					}
					errs[i] = err
				}()
			}
			wg.Wait()
			for i, err := range errs {
				var pe *PeerError
				if !errors.As(err, &pe) || pe.Op != "connect" {
					t.Fatalf("rank %d: %v, want a connect *PeerError", i, err)
				}
			}
			if !errors.Is(errs[0], ErrHandshake) || !strings.Contains(errs[0].Error(), "job id") {
				t.Fatalf("rank 0: %v, want a job id refusal", errs[0])
			}
		})
	}
	checkGoroutines(t, base)
}

func TestGenerationChange(t *testing.T) {
	base := runtime.NumGoroutine()
	for _, kind := range []string{TransportGRPC, TransportTCP} {
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
			build := func(gen uint64, members []int) ([]*Ring, []error) {
				rings := make([]*Ring, len(members))
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
						rings[i], errs[i] = NewRing(ctx, srvs[m], Config{JobID: "job", Generation: gen, Rank: i, Peers: ps, Transport: kind, Timeout: 2 * time.Second})
					}()
				}
				wg.Wait()
				return rings, errs
			}
			sum := func(rings []*Ring) []error {
				return onAll(rings, func(r *Ring) error {
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
				if !errors.Is(err, ErrGeneration) {
					t.Fatalf("generation 1 ring of worker %d after generation 2: %v", i, err)
				}
			}
			closeAll(g1)
			// A late dial of generation 1 is refused as stale.
			err := dialHello(ctx, kind, peers[0], handshake{Version: ProtocolVersion, Kind: helloKind, Generation: 1, From: 2, To: 0, Size: 3, JobID: "job"})
			if !errors.Is(err, ErrGeneration) {
				t.Fatalf("stale dial: %v", err)
			}
			// Registering an older generation is refused too.
			if _, err := NewRing(ctx, srvs[0], Config{JobID: "job", Generation: 1, Rank: 0, Peers: peers[:1]}); !errors.Is(err, ErrGeneration) {
				t.Fatalf("NewRing of an older generation: %v", err)
			}
			mustAll(t, sum(g2))
		})
	}
	checkGoroutines(t, base)
}

func FuzzDecodeHandshake(f *testing.F) {
	f.Add((&handshake{Version: 1, Kind: helloKind, Generation: 9, From: 1, To: 2, Size: 3, JobID: "j"}).encode())
	f.Add((&handshake{Version: 1, Kind: refuseKind, Code: 2, Reason: "no"}).encode())
	f.Add([]byte("IRNG"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHandshake(b)
		if err != nil {
			return
		}
		if !bytes.Equal(h.encode(), b) {
			t.Fatalf("decode/encode not the identity for %q", b)
		}
	})
}

func FuzzFrameReader(f *testing.F) {
	var hdr [frameHeader]byte
	putFrameHeader(&hdr, 7, 3)
	f.Add(append(hdr[:], 'a', 'b', 'c'), 16)
	putFrameHeader(&hdr, 1, 1<<31)
	f.Add(hdr[:], 8)
	f.Fuzz(func(t *testing.T, b []byte, max int) {
		if max < 0 || max > 1<<16 {
			return
		}
		fr := frameReader{r: bytes.NewReader(b)}
		dst := make([]byte, max)
		total := 0
		for {
			_, n, err := fr.next(dst, max)
			if err != nil {
				if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, errMalformed) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if n > max {
				t.Fatalf("frame of %d bytes beyond max %d", n, max)
			}
			total += frameHeader + n
			if total > len(b) {
				t.Fatalf("read %d bytes from %d", total, len(b))
			}
		}
	})
}

func FuzzRawCodecUnmarshal(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 'x'}, 3)
	f.Add([]byte{1, 2}, 1)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		var bs mem.BufferSlice
		if split > 0 && split < len(b) {
			bs = mem.BufferSlice{mem.SliceBuffer(b[:split]), mem.SliceBuffer(b[split:])}
		} else {
			bs = mem.BufferSlice{mem.SliceBuffer(b)}
		}
		var m inMsg
		err := rawCodec{}.Unmarshal(bs, &m)
		if len(b) < 8 {
			if err == nil {
				t.Fatal("short message accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := m.data.Materialize(); !bytes.Equal(got, b[8:]) {
			t.Fatalf("payload %q, want %q", got, b[8:])
		}
		m.data.Free()
	})
}

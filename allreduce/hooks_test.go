package allreduce

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
)

// passer is an in-memory transport that runs every pass itself through
// the Pass hook, as the TCP event loop does: sends with Payload, receives
// straight into Data (Direct) or through Consume in two pieces, Finish,
// and CheckHeader on every message.
type passer struct {
	*memTransport
	handled *atomic.Int64
}

func (t passer) Pass(ctx context.Context, p *Pass) (int, bool, error) {
	t.handled.Add(1)
	si, ri := 0, 0
	var scratch []byte
	for si < len(p.Sends) || ri < len(p.Recvs) {
		for si < len(p.Sends) && p.Sends[si].Dep < ri {
			if err := t.Send(ctx, p.Tag, p.Payload(p.Sends[si])); err != nil {
				return p.Right(), true, err
			}
			si++
		}
		if ri == len(p.Recvs) {
			continue
		}
		m := p.Recvs[ri]
		if p.Direct(m) {
			tag, n, err := t.Recv(ctx, p.Data[m.Lo*p.ElemBytes:m.Hi*p.ElemBytes])
			if err == nil {
				err = p.CheckHeader(ri, tag, n)
			}
			if err != nil {
				return p.Left(), true, err
			}
		} else {
			scratch = p.Scratch(max(p.WireLen(m), 8))
			tag, n, err := t.Recv(ctx, scratch)
			if err == nil {
				err = p.CheckHeader(ri, tag, n)
			}
			if err != nil {
				return p.Left(), true, err
			}
			half := (m.Hi - m.Lo) / 2
			p.Consume(m, 0, scratch[:half*p.WireBytes])
			p.Consume(m, half, scratch[half*p.WireBytes:n])
		}
		p.Finish(m)
		ri++
	}
	return 0, true, nil
}

// passerRings connects k rings in memory whose passes run through the
// Pass hook; handled counts the passes.
func passerRings(t *testing.T, k int, cfg Config, handled *atomic.Int64) []*Ring {
	t.Helper()
	pipes := make([]*memPipe, k)
	for i := range pipes {
		pipes[i] = newMemPipe()
	}
	peers := make([]string, k)
	for i := range peers {
		peers[i] = fmt.Sprintf("mem:%d", i)
	}
	rings := make([]*Ring, k)
	for i := range rings {
		c := cfg
		c.Rank, c.Peers = i, peers
		r, err := NewRingWithTransport(c, passer{&memTransport{out: pipes[i], in: pipes[(i+k-1)%k]}, handled})
		if err != nil {
			t.Fatal(err)
		}
		rings[i] = r
	}
	t.Cleanup(func() { closeAll(rings) })
	return rings
}

// TestPasserMatchesGoroutinePass: a transport that runs passes through the
// Pass hook leaves, for every collective and wire format, exactly the
// bytes the ring's own goroutine pass leaves, and a ring with compression
// never hands it a pass.
func TestPasserMatchesGoroutinePass(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		wire        Wire
		compression string
	}{
		{"f32", Float32, ""},
		{"bf16", BFloat16, ""},
		{"s2", Float32, "s2"},
	} {
		for _, k := range []int{2, 3, 5} {
			t.Run(fmt.Sprintf("%s/K=%d", tc.name, k), func(t *testing.T) {
				cfg := Config{JobID: "hook", Wire: tc.wire, Compression: tc.compression, ChunkBytes: 256}
				var handled atomic.Int64
				hooked := passerRings(t, k, cfg, &handled)
				plain := memRings(t, k, cfg)
				n := 40*k + 3
				run := func(rings []*Ring) [][]byte {
					out := make([][]byte, k)
					mustAll(t, onAll(rings, func(r *Ring) error {
						me := r.Rank()
						rng := newRand(uint64(7*k + me))
						x := make([]float32, n)
						fill32(rng, x)
						if err := r.AllReduce(ctx, x); err != nil {
							return err
						}
						y := make([]float64, n)
						for i := range y {
							y[i] = rng.NormFloat64()
						}
						if err := r.AllReduce64(ctx, y); err != nil {
							return err
						}
						z := make([]float32, n)
						fill32(rng, z)
						counts := make([]int, k)
						for i := range counts {
							counts[i] = n / k
						}
						counts[k-1] += n % k
						if err := r.ReduceScatter(ctx, z, counts); err != nil {
							return err
						}
						gcounts := make([]int, k)
						for i := range gcounts {
							gcounts[i] = 100 + 37*i
						}
						send := make([]byte, gcounts[me])
						for i := range send {
							send[i] = byte(me*31 + i)
						}
						all := make([]byte, 0, k*300)
						all = all[:sum(gcounts)]
						if err := r.AllGather(ctx, send, all, gcounts); err != nil {
							return err
						}
						b := make([]byte, 1000)
						if me == 1 {
							for i := range b {
								b[i] = byte(i * 7)
							}
						}
						if err := r.Broadcast(ctx, b, 1); err != nil {
							return err
						}
						if err := r.Barrier(ctx); err != nil {
							return err
						}
						var res []byte
						for _, v := range x {
							res = fmt.Appendf(res, "%x,", math.Float32bits(v))
						}
						for _, v := range y {
							res = fmt.Appendf(res, "%x,", math.Float64bits(v))
						}
						for _, v := range z {
							res = fmt.Appendf(res, "%x,", math.Float32bits(v))
						}
						res = append(append(res, all...), b...)
						out[me] = res
						return nil
					}))
					return out
				}
				got, want := run(hooked), run(plain)
				for r := range k {
					if string(got[r]) != string(want[r]) {
						t.Fatalf("rank %d: the Pass hook left other bytes than the goroutine pass", r)
					}
				}
				wantHandled := int64(6 * k) // six collectives on every rank
				if tc.compression != "" {
					wantHandled = 0
				}
				if h := handled.Load(); h != wantHandled {
					t.Fatalf("the transport ran %d passes, want %d", h, wantHandled)
				}
			})
		}
	}
}

func sum(x []int) int {
	s := 0
	for _, v := range x {
		s += v
	}
	return s
}

package dataplane

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/internal/link"

	"github.com/infonce/infonce/allreduce/grpc"
)

// BenchmarkAllReduce measures in-process rings over loopback; the
// multi-process figures come from "infonce bench allreduce".
func BenchmarkAllReduce(b *testing.B) {
	for _, kind := range []string{allreduce.TransportGRPC, allreduce.TransportTCP} {
		for _, size := range []int{4 << 10, 16 << 20} {
			for _, chunk := range []int{64 << 10, 512 << 10, 4 << 20} {
				b.Run(fmt.Sprintf("%s/K=2/%dB/chunk=%d", kind, size, chunk), func(b *testing.B) {
					rings := netRings(b, 2, allreduce.Config{JobID: "b", Transport: kind, ChunkBytes: chunk})
					bufs := [][]float32{make([]float32, size/4), make([]float32, size/4)}
					b.SetBytes(int64(size))
					b.ResetTimer()
					for range b.N {
						mustAll(b, onAll(rings, func(r *allreduce.Ring) error { return r.AllReduce(context.Background(), bufs[r.Rank()]) }))
					}
				})
			}
		}
	}
}

// BenchmarkLoopbackTCP is the single-stream loopback TCP copy the data
// planes are judged against.
func BenchmarkLoopbackTCP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	const size = 16 << 20
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_, err = io.Copy(io.Discard, c)
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, size)
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkGRPCLink streams 512 KiB messages over one gRPC link.
func BenchmarkGRPCLink(b *testing.B) {
	srv, sl := listenRegisteredB(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := grpc.Dial(ctx, srv.Addr(), link.Handshake{Version: link.ProtocolVersion, Kind: link.HelloKind, Generation: 5, From: 0, To: 1, Size: 3, JobID: "job"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	in := (<-sl.in).Link
	const msg = 512 << 10
	p := make([]byte, msg)
	dst := make([]byte, msg)
	b.SetBytes(msg)
	done := make(chan struct{})
	go func() {
		for range b.N {
			if _, _, err := in.Recv(ctx, dst); err != nil {
				b.Error(err)
				break
			}
		}
		close(done)
	}()
	for range b.N {
		if err := out.Send(1, p); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	out.Close(false)
	in.Close()
}

func listenRegisteredB(b *testing.B) (*Server, *slot) {
	srv, err := Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	sl, err := srv.register(allreduce.Config{JobID: "job", Generation: 5, Rank: 1, Peers: []string{"a", "b", "c"}})
	if err != nil {
		b.Fatal(err)
	}
	return srv, sl
}

package allreduce

import (
	"context"
	"testing"
	"time"
)

func BenchmarkGRPCLink(b *testing.B) {
	srv, sl := listenRegisteredB(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := dialGRPC(ctx, srv.Addr(), handshake{Version: ProtocolVersion, Kind: helloKind, Generation: 5, From: 0, To: 1, Size: 3, JobID: "job"})
	if err != nil {
		b.Fatal(err)
	}
	in := (<-sl.in).link
	const msg = 512 << 10
	p := make([]byte, msg)
	dst := make([]byte, msg)
	b.SetBytes(msg)
	done := make(chan struct{})
	go func() {
		for range b.N {
			if _, _, err := in.recv(ctx, dst); err != nil {
				b.Error(err)
				break
			}
		}
		close(done)
	}()
	for range b.N {
		if err := out.send(1, p); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	out.close(false)
	in.close()
}

func listenRegisteredB(b *testing.B) (*Server, *slot) {
	srv, err := Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	sl, err := srv.register(Config{JobID: "job", Generation: 5, Rank: 1, Peers: []string{"a", "b", "c"}})
	if err != nil {
		b.Fatal(err)
	}
	return srv, sl
}

package shm

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/internal/link"
)

// shmPair builds a shared-memory link inside this process over a loopback
// TCP connection, as NewRing does between two processes.
func shmPair(t *testing.T) (*Out, *In, net.Conn, net.Conn) {
	t.Helper()
	if _, err := os.Stat(shmDir); err != nil {
		t.Skipf("no %s: %v", shmDir, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	sc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	rc := <-acc
	seg, name, nonce, err := createShm(shmDir)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := openShm(name, nonce)
	if err != nil {
		t.Fatal(err)
	}
	seg.unlink()
	if _, err := os.Stat(name); !os.IsNotExist(err) {
		t.Errorf("segment file %s left after unlink: %v", name, err)
	}
	seg.watch(sc)
	peer.watch(rc)
	out, in := &Out{s: seg}, &In{s: peer}
	t.Cleanup(func() { out.Close(false); in.Close() })
	return out, in, sc, rc
}

// TestShmFrames sends frames of many sizes, the ring's size and more
// included, through a link and receives them whole and in order.
func TestShmFrames(t *testing.T) {
	out, in, _, _ := shmPair(t)
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 7, 4096, shmRing - link.FrameHeader, shmRing, shmRing + 13, 3*shmRing + 5, 100}
	for range 30 {
		sizes = append(sizes, rng.IntN(1<<20))
	}
	frames := make([][]byte, len(sizes))
	for i, n := range sizes {
		frames[i] = make([]byte, n)
		for j := range frames[i] {
			frames[i][j] = byte(rng.Uint32())
		}
	}
	errc := make(chan error, 1)
	go func() {
		for i, f := range frames {
			if err := out.Send(uint64(i)<<8|7, f); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	dst := make([]byte, 4*shmRing)
	for i, f := range frames {
		tag, n, err := in.Recv(context.Background(), dst)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if tag != uint64(i)<<8|7 || !bytes.Equal(dst[:n], f) {
			t.Fatalf("frame %d (%d bytes): got tag %x and %d bytes", i, len(f), tag, n)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestShmGracefulClose: the frames sent before a graceful close are
// delivered, then the receiver learns the link is gone.
func TestShmGracefulClose(t *testing.T) {
	out, in, _, _ := shmPair(t)
	for i := range 3 {
		if err := out.Send(uint64(i), []byte{byte(i), 1, 2}); err != nil {
			t.Fatal(err)
		}
	}
	out.Close(true)
	dst := make([]byte, 16)
	for i := range 3 {
		tag, n, err := in.Recv(context.Background(), dst)
		if err != nil || tag != uint64(i) || n != 3 || dst[0] != byte(i) {
			t.Fatalf("frame %d: tag %d, %d bytes, %v", i, tag, n, err)
		}
	}
	if _, _, err := in.Recv(context.Background(), dst); !errors.Is(err, allreduce.ErrPeerLost) {
		t.Fatalf("after the last frame: %v, want allreduce.ErrPeerLost", err)
	}
}

// TestShmPeerGone: a receiver waiting for a frame, and a sender waiting
// for room, fail with allreduce.ErrPeerLost soon after the other process's TCP end
// goes away (as when it is killed), and a local close ends a wait at once.
func TestShmPeerGone(t *testing.T) {
	t.Run("receiver", func(t *testing.T) {
		_, in, sc, _ := shmPair(t)
		errc := make(chan error, 1)
		go func() {
			_, _, err := in.Recv(context.Background(), make([]byte, 8))
			errc <- err
		}()
		time.Sleep(30 * time.Millisecond)
		sc.(*net.TCPConn).SetLinger(0)
		sc.Close() // the sending process died
		select {
		case err := <-errc:
			if !errors.Is(err, allreduce.ErrPeerLost) {
				t.Fatalf("recv: %v, want allreduce.ErrPeerLost", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("recv still waits 2s after the peer went away")
		}
	})
	t.Run("sender", func(t *testing.T) {
		out, _, _, rc := shmPair(t)
		errc := make(chan error, 1)
		go func() {
			errc <- out.Send(1, make([]byte, 2*shmRing)) // more than the ring holds
		}()
		time.Sleep(30 * time.Millisecond)
		rc.Close() // the receiving process died
		select {
		case err := <-errc:
			if !errors.Is(err, allreduce.ErrPeerLost) {
				t.Fatalf("send: %v, want allreduce.ErrPeerLost", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("send still waits 2s after the peer went away")
		}
	})
	t.Run("local close", func(t *testing.T) {
		_, in, _, _ := shmPair(t)
		errc := make(chan error, 1)
		go func() {
			_, _, err := in.Recv(context.Background(), make([]byte, 8))
			errc <- err
		}()
		time.Sleep(30 * time.Millisecond)
		start := time.Now()
		in.Close()
		select {
		case err := <-errc:
			if err == nil {
				t.Fatal("recv on a closed link succeeded")
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("close took %v to end the wait", d)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("recv still waits 2s after the link was closed")
		}
	})
}

// TestShmOpenRefusesOthers: a segment is opened only under its own name
// and nonce, inside the shared-memory directory.
func TestShmOpenRefusesOthers(t *testing.T) {
	if _, err := os.Stat(shmDir); err != nil {
		t.Skipf("no %s: %v", shmDir, err)
	}
	seg, name, nonce, err := createShm(shmDir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { seg.unlink(); seg.unmap() }()
	bad := nonce
	bad[0] ^= 1
	if s, err := openShm(name, bad); err == nil {
		s.unmap()
		t.Error("a segment was opened with another nonce")
	}
	for _, n := range []string{"/etc/passwd", shmDir + "/../etc/passwd", "/tmp/infonce-ring-0123456789abcdef"} {
		if s, err := openShm(n, nonce); err == nil {
			s.unmap()
			t.Errorf("%s was opened", n)
		}
	}
}

// FuzzShmOffer feeds arbitrary offer records (bytes from a peer) to the
// decoder and to openShm: nothing but a segment of its own making opens.
func FuzzShmOffer(f *testing.F) {
	good := make([]byte, shmOfferBytes)
	name := shmDir + "/infonce-ring-0123456789abcdef"
	good[0] = byte(len(name))
	copy(good[1:], name)
	f.Add(good)
	f.Add(make([]byte, shmOfferBytes))
	f.Add([]byte{200})
	f.Fuzz(func(t *testing.T, rec []byte) {
		name, nonce, ok := parseShmOffer(rec)
		if !ok {
			return
		}
		if len(name) > shmOfferBytes-17 {
			t.Fatalf("name of %d bytes decoded", len(name))
		}
		if s, err := openShm(name, nonce); err == nil {
			s.unmap()
			t.Fatalf("offer %q opened a segment", name)
		}
	})
}

func TestCountCPUList(t *testing.T) {
	for _, c := range []struct {
		list string
		want int
	}{
		{"0", 1}, {"0-1", 2}, {"0-3,6,8-9", 7}, {"", 0}, {"0-", 0}, {"3-1", 0}, {"a", 0}, {"0,,1", 0},
	} {
		if got := countCPUList(c.list); got != c.want {
			t.Errorf("countCPUList(%q) = %d, want %d", c.list, got, c.want)
		}
	}
	if n := machineCores(); n < 1 {
		t.Errorf("machineCores() = %d on this machine", n)
	}
}

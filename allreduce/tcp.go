package allreduce

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// TCP data plane tuning.
const (
	tcpReadBuffer = 32 << 10 // bufio in front of frame headers and small frames
	// tcpSockBuffer is SO_SNDBUF / SO_RCVBUF. With 8 ranks on 2 cores,
	// 512 KiB, 1, 2 and 4 MiB gave 157, 132, 121 and 118 ms of CPU per
	// 16 MiB all-reduce: fewer wake-ups outweigh the cache misses of more
	// bytes in flight. (Linux caps it at net.core.rmem_max/wmem_max.)
	tcpSockBuffer = 4 << 20
	// tcpChunkBytes is the pipelining chunk of the plain TCP transport when
	// Config.ChunkBytes is 0: with 2 and 4 ranks, 1 MiB chunks cost less
	// CPU per byte than 256 KiB, 512 KiB, 2 and 4 MiB ones (one wake-up of
	// the reader per chunk).
	tcpChunkBytes = 1 << 20
)

// tcpOut is the sending half of a plain TCP link.
type tcpOut struct {
	conn *net.TCPConn
	raw  syscall.RawConn // for the event loop of tcploop_linux.go; set on first use
	hdr  [frameHeader]byte
	bufs net.Buffers
	once sync.Once
}

func tuneTCP(c *net.TCPConn) {
	c.SetNoDelay(true)
	c.SetReadBuffer(tcpSockBuffer)
	c.SetWriteBuffer(tcpSockBuffer)
}

// dialTCP opens the link to addr, retrying refused connections until ctx
// ends, and completes the handshake.
func dialTCP(ctx context.Context, addr string, hello handshake, dial func(context.Context, string) (net.Conn, error)) (*tcpOut, error) {
	var conn net.Conn
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 300*time.Millisecond) {
		var err error
		conn, err = dial(ctx, addr)
		if err == nil {
			break
		}
		if errors.Is(err, ErrUnauthenticated) {
			return nil, err
		}
		if !errors.Is(err, syscall.ECONNREFUSED) || ctx.Err() != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w: connecting to %s: %v", ErrDeadline, addr, err)
			}
			return nil, fmt.Errorf("%w: connecting to %s: %v", ErrPeerLost, addr, err)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: connecting to %s: %v", ErrDeadline, addr, err)
		}
	}
	tc := conn.(*net.TCPConn)
	tuneTCP(tc)
	stop := context.AfterFunc(ctx, func() { tc.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*tcpOut, error) {
		stop()
		tc.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: handshake with %s: %v", ErrDeadline, addr, err)
		}
		return nil, err
	}
	out := &tcpOut{conn: tc}
	if _, err := tc.Write(tcpPreface[:]); err != nil {
		return fail(fmt.Errorf("%w: sending preface to %s: %v", ErrPeerLost, addr, err))
	}
	if err := out.send(0, hello.encode()); err != nil {
		return fail(fmt.Errorf("sending handshake to %s: %w", addr, err))
	}
	fr := frameReader{r: tc}
	buf := make([]byte, maxHandshake)
	_, n, err := fr.next(buf, maxHandshake)
	if err != nil {
		return fail(fmt.Errorf("%w: reading handshake reply from %s: %v", ErrPeerLost, addr, err))
	}
	if err := checkReply(buf[:n], addr); err != nil {
		return fail(err)
	}
	if !stop() {
		return fail(fmt.Errorf("%w: connecting to %s", ErrDeadline, addr))
	}
	return out, nil
}

// send writes one frame with a single writev(2): header and payload
// straight from p, no copy, one segment train and one wake-up of the
// receiver.
func (t *tcpOut) send(tag uint64, p []byte) error {
	putFrameHeader(&t.hdr, tag, len(p))
	t.bufs = append(t.bufs[:0], t.hdr[:], p)
	bufs := t.bufs // WriteTo consumes its receiver
	// writev is invisible to the race detector; tell it that what is
	// written happens before what is read from the network afterwards.
	raceReleaseMerge(unsafe.Pointer(&netSync))
	_, err := bufs.WriteTo(t.conn)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPeerLost, err)
	}
	return nil
}

// netSync stands for the network in the race detector's model: a send
// releases it and a receive acquires it, as package syscall does for
// read(2) and write(2).
var netSync byte

// close shuts the connection; the kernel still delivers what was written.
func (t *tcpOut) close(graceful bool) {
	t.once.Do(func() {
		if !graceful {
			t.conn.SetLinger(0)
		}
		t.conn.Close()
	})
}

// tcpIn is the receiving half of a plain TCP link.
type tcpIn struct {
	conn     *net.TCPConn
	br       *bufio.Reader
	fr       frameReader
	raw      syscall.RawConn
	blocking bool // reads go through readFull's blocking recvfrom
	// lowat is the SO_RCVLOWAT the event loop last set (0 or 1: none);
	// readFull clears it, since the kernel wakes a blocked reader only
	// once that many bytes are in.
	lowat int
	once  sync.Once
}

func newTCPIn(c *net.TCPConn, r *bufio.Reader) *tcpIn {
	t := &tcpIn{conn: c, br: r, fr: frameReader{r: r}}
	t.raw, _ = c.SyscallConn()
	return t
}

func (t *tcpIn) recv(ctx context.Context, dst []byte) (uint64, int, error) {
	hdr := t.fr.hdr[:]
	err := t.readFull(hdr)
	var tag uint64
	var n int
	if err == nil {
		tag = binary.LittleEndian.Uint64(hdr[0:])
		n64 := uint64(binary.LittleEndian.Uint32(hdr[8:]))
		if n64 > uint64(len(dst)) || n64 > MaxFrameBytes {
			err = fmt.Errorf("frame of %d bytes exceeds %d: %w", n64, min(len(dst), MaxFrameBytes), errMalformed)
		} else if n = int(n64); n > 0 {
			if err = t.readFull(dst[:n]); err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
		}
	}
	raceAcquire(unsafe.Pointer(&netSync))
	if err != nil {
		if errors.Is(err, errMalformed) {
			return tag, 0, fmt.Errorf("%w: %v", ErrMismatch, err)
		}
		return tag, 0, fmt.Errorf("%w: %v", ErrPeerLost, err)
	}
	return tag, n, nil
}

func (t *tcpIn) close() {
	t.once.Do(func() {
		t.shutdown()
		t.conn.Close()
	})
}

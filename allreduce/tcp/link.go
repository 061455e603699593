package tcp

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/internal/link"
	"github.com/infonce/infonce/allreduce/internal/race"
)

// TCP data plane tuning.
const (
	tcpReadBuffer = 32 << 10 // bufio in front of frame headers and small frames
	// tcpSockBuffer is SO_SNDBUF / SO_RCVBUF. With 8 ranks on 2 cores,
	// 512 KiB, 1, 2 and 4 MiB gave 157, 132, 121 and 118 ms of CPU per
	// 16 MiB all-reduce: fewer wake-ups outweigh the cache misses of more
	// bytes in flight. (Linux caps it at net.core.rmem_max/wmem_max.)
	tcpSockBuffer = 4 << 20
)

// Out is the sending half of a plain TCP link.
type Out struct {
	conn *net.TCPConn
	raw  syscall.RawConn // for the event loop of loop_linux.go; set on first use
	hdr  [link.FrameHeader]byte
	bufs net.Buffers
	once sync.Once
	loop loopState // the event loop's state, used by one pass at a time
}

// Conn is the link's connection.
func (t *Out) Conn() *net.TCPConn { return t.conn }

func tuneTCP(c *net.TCPConn) {
	c.SetNoDelay(true)
	c.SetReadBuffer(tcpSockBuffer)
	c.SetWriteBuffer(tcpSockBuffer)
}

// Dial opens the link to addr, retrying refused connections until ctx
// ends, and completes the handshake.
func Dial(ctx context.Context, addr string, hello link.Handshake, dial func(context.Context, string) (net.Conn, error)) (*Out, error) {
	var conn net.Conn
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 300*time.Millisecond) {
		var err error
		conn, err = dial(ctx, addr)
		if err == nil {
			break
		}
		if errors.Is(err, allreduce.ErrUnauthenticated) {
			return nil, err
		}
		if !errors.Is(err, syscall.ECONNREFUSED) || ctx.Err() != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w: connecting to %s: %v", allreduce.ErrDeadline, addr, err)
			}
			return nil, fmt.Errorf("%w: connecting to %s: %v", allreduce.ErrPeerLost, addr, err)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: connecting to %s: %v", allreduce.ErrDeadline, addr, err)
		}
	}
	tc := conn.(*net.TCPConn)
	tuneTCP(tc)
	stop := context.AfterFunc(ctx, func() { tc.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*Out, error) {
		stop()
		tc.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: handshake with %s: %v", allreduce.ErrDeadline, addr, err)
		}
		return nil, err
	}
	out := &Out{conn: tc}
	if _, err := tc.Write(link.Preface[:]); err != nil {
		return fail(fmt.Errorf("%w: sending preface to %s: %v", allreduce.ErrPeerLost, addr, err))
	}
	if err := out.Send(0, hello.Encode()); err != nil {
		return fail(fmt.Errorf("sending handshake to %s: %w", addr, err))
	}
	fr := link.FrameReader{R: tc}
	buf := make([]byte, link.MaxHandshake)
	_, n, err := fr.Next(buf, link.MaxHandshake)
	if err != nil {
		return fail(fmt.Errorf("%w: reading handshake reply from %s: %v", allreduce.ErrPeerLost, addr, err))
	}
	if err := link.CheckReply(buf[:n], addr); err != nil {
		return fail(err)
	}
	if !stop() {
		return fail(fmt.Errorf("%w: connecting to %s", allreduce.ErrDeadline, addr))
	}
	return out, nil
}

// Send writes one frame with a single writev(2): header and payload
// straight from p, no copy, one segment train and one wake-up of the
// receiver.
func (t *Out) Send(tag uint64, p []byte) error {
	link.PutFrameHeader(&t.hdr, tag, len(p))
	t.bufs = append(t.bufs[:0], t.hdr[:], p)
	bufs := t.bufs // WriteTo consumes its receiver
	// writev is invisible to the race detector; tell it that what is
	// written happens before what is read from the network afterwards.
	race.ReleaseMerge(unsafe.Pointer(&race.Net))
	_, err := bufs.WriteTo(t.conn)
	if err != nil {
		return fmt.Errorf("%w: %v", allreduce.ErrPeerLost, err)
	}
	return nil
}

// Close shuts the connection; the kernel still delivers what was written.
func (t *Out) Close(graceful bool) {
	t.once.Do(func() {
		if !graceful {
			t.conn.SetLinger(0)
		}
		t.conn.Close()
	})
}

// In is the receiving half of a plain TCP link.
type In struct {
	conn     *net.TCPConn
	br       *bufio.Reader
	fr       link.FrameReader
	raw      syscall.RawConn
	blocking bool // reads go through readFull's blocking recvfrom
	// lowat is the SO_RCVLOWAT the event loop last set (0 or 1: none);
	// readFull clears it, since the kernel wakes a blocked reader only
	// once that many bytes are in.
	lowat int
	once  sync.Once
}

// Conn is the link's connection.
func (t *In) Conn() *net.TCPConn { return t.conn }

func newIn(c *net.TCPConn, r *bufio.Reader) *In {
	t := &In{conn: c, br: r, fr: link.FrameReader{R: r}}
	t.raw, _ = c.SyscallConn()
	return t
}

func (t *In) Recv(ctx context.Context, dst []byte) (uint64, int, error) {
	hdr := t.fr.Hdr[:]
	err := t.readFull(hdr)
	var tag uint64
	var n int
	if err == nil {
		tag = binary.LittleEndian.Uint64(hdr[0:])
		n64 := uint64(binary.LittleEndian.Uint32(hdr[8:]))
		if n64 > uint64(len(dst)) || n64 > allreduce.MaxFrameBytes {
			err = fmt.Errorf("frame of %d bytes exceeds %d: %w", n64, min(len(dst), allreduce.MaxFrameBytes), link.ErrMalformed)
		} else if n = int(n64); n > 0 {
			if err = t.readFull(dst[:n]); err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
		}
	}
	race.Acquire(unsafe.Pointer(&race.Net))
	if err != nil {
		if errors.Is(err, link.ErrMalformed) {
			return tag, 0, fmt.Errorf("%w: %v", allreduce.ErrMismatch, err)
		}
		return tag, 0, fmt.Errorf("%w: %v", allreduce.ErrPeerLost, err)
	}
	return tag, n, nil
}

func (t *In) Close() {
	t.once.Do(func() {
		t.shutdown()
		t.conn.Close()
	})
}

// Serve serves a plain TCP link from a left neighbour after its preface:
// it reads the handshake, offers the link and sends the decision.
func Serve(c *net.TCPConn, logger *slog.Logger, offer link.Offer) {
	tuneTCP(c)
	br := bufio.NewReaderSize(c, tcpReadBuffer)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	fr := link.FrameReader{R: br}
	buf := make([]byte, link.MaxHandshake)
	_, n, err := fr.Next(buf, link.MaxHandshake)
	c.SetReadDeadline(time.Time{})
	out := &Out{conn: c}
	hello, herr := link.DecodeHandshake(buf[:n])
	reply := func(r link.Refusal) error {
		if r.Code != link.CodeNone {
			logger.Warn("allreduce: refused a link", "job", hello.JobID, "generation", hello.Generation, "from", hello.From, "reason", r.Reason)
		}
		h := link.Reply(hello, r)
		return out.Send(0, h.Encode())
	}
	if err != nil {
		c.Close()
		return
	}
	if herr != nil {
		reply(link.Refusal{Code: link.CodeMalformed, Reason: herr.Error()})
		c.Close()
		return
	}
	tin := newIn(c, br)
	tin.makeBlocking() // before the ring can see the link
	in := link.NewInbound(hello, tin)
	r := offer(context.Background(), in)
	if r.Code != link.CodeNone {
		reply(r)
		c.Close()
		return
	}
	if err := reply(link.Refusal{}); err != nil {
		in.Link.Close()
	}
}

package tcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/internal/link"
	"github.com/infonce/infonce/allreduce/internal/race"
)

// The plain TCP pass on Linux: one goroutine (the caller's) drives both
// links of the rank as an event loop. It writes to the right neighbour
// with non-blocking sendmsg(2), reads from the left one with non-blocking
// recvmsg(2), adds what it read into the buffer as soon as it is in, and
// sleeps in one ppoll(2) on both sockets when neither can progress. With
// 2 cores shared by up to 8 ranks, what costs is CPU per byte: this path
// has no goroutine hand-off per chunk, no wake-up of a second thread, no
// network-poller round trip, and SO_RCVLOWAT keeps the reader asleep until
// the rest of the current message (up to lowatCap bytes) is in the socket,
// instead of waking it for every 64 KiB loopback segment.

// lowatCap bounds SO_RCVLOWAT (the kernel bounds it by half the receive
// buffer too). With 2 ranks, 8 alternated rounds of a 64 MiB all-reduce
// gave 61, 56 and 52 ms of CPU per operation with caps of 64 KiB, 256 KiB
// and 1 MiB (one wake-up per 1 MiB chunk).
const lowatCap = 1 << 20

// recvPiece is the scratch through which received bytes are added, so
// that the addition reads them while they are still in the cache. With 2
// and 4 ranks on loopback, pieces of 64 KiB and 256 KiB cost more CPU per
// all-reduce in system calls than they saved in cache misses (2 ranks,
// 64 MiB: 60 and 52 ms against 51 for 1 MiB), so a piece is a whole TCP
// chunk.
const recvPiece = allreduce.DefaultTCPChunkBytes

// pollSlice bounds one ppoll so that a closed transport is noticed even if
// no socket event reports it.
const pollSlice = 200 * time.Millisecond

// loopState is the progress of one pass through the event loop.
type loopState struct {
	p    *allreduce.Pass
	tag  uint64
	data []byte
	bf16 bool
	es   int // bytes per element in data
	wes  int // bytes per element on the wire
	// scratch is the piece through which received bytes that are added
	// or decoded pass (the ring's receive scratch)
	scratch []byte

	ofd, ifd int

	// sending: message si, sOff bytes of header+payload written
	si       int
	sOff     int
	sHdr     [link.FrameHeader]byte
	sPayload []byte
	sIov     [2]unix.Iovec
	sMsg     unix.Msghdr

	// receiving: message ri, rHdrOff header bytes and rOff payload bytes
	// read
	ri      int
	rHdrOff int
	rOff    int
	rDone   int // elements consumed from the scratch piece
	rFill   int // bytes in the scratch piece not yet consumed
	rHdr    [link.FrameHeader]byte
	rIov    [2]unix.Iovec
	rMsg    unix.Msghdr
	pfd     [2]pollFd
	closed  *atomic.Bool // set once the transport is closed
	in      *In
}

// pollFd is struct pollfd.
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

const (
	pollIn  = 0x1
	pollOut = 0x4
	pollErr = 0x8
	pollHup = 0x10
)

// RunPass runs pass p over the links out (to the right neighbour) and in
// (from the left one) as one event loop in the caller's goroutine;
// closed is set once the transport holding them is closed. It returns
// the peer to blame with its error.
func RunPass(ctx context.Context, out *Out, in *In, closed *atomic.Bool, p *allreduce.Pass) (peer int, err error) {
	st := &out.loop
	*st = loopState{p: p, tag: p.Tag, data: p.Data, bf16: p.BF16, es: p.ElemBytes, wes: p.WireBytes, closed: closed, in: in}
	// The fds stay referenced (so not closed and not reused) for as long
	// as the loop runs: Close waits for Control to return, and shuts the
	// receiving socket down first, which wakes the loop.
	var loopErr error
	cerr := out.raw.Control(func(ofd uintptr) {
		ierr := in.raw.Control(func(ifd uintptr) {
			st.ofd, st.ifd = int(ofd), int(ifd)
			peer, loopErr = st.run(ctx)
		})
		if ierr != nil && loopErr == nil {
			peer, loopErr = p.Left(), fmt.Errorf("%w: %v", allreduce.ErrPeerLost, ierr)
		}
	})
	if cerr != nil && loopErr == nil {
		peer, loopErr = p.Right(), fmt.Errorf("%w: %v", allreduce.ErrPeerLost, cerr)
	}
	st.p, st.data, st.sPayload, st.scratch = nil, nil, nil, nil
	return peer, loopErr
}

// Runs reports whether RunPass can drive these links (sockets whose
// descriptors it can reach).
func Runs(out *Out, in *In) bool {
	if in.raw == nil {
		return false
	}
	if out.raw == nil {
		var err error
		if out.raw, err = out.conn.SyscallConn(); err != nil {
			return false
		}
	}
	return true
}

// run is the event loop. It returns the peer to blame with its error.
func (st *loopState) run(ctx context.Context) (int, error) {
	p := st.p
	sends, recvs := p.Sends, p.Recvs
	deadline, hasDeadline := ctx.Deadline()
	for st.si < len(sends) || st.ri < len(recvs) {
		if st.closed.Load() {
			return p.Left(), fmt.Errorf("%w: %w", allreduce.ErrPeerLost, link.ErrLinkClosed)
		}
		wantOut, wantIn := false, false
		progress := false
		// Send as long as the socket takes it and the next message's
		// dependency has arrived.
		for st.si < len(sends) && sends[st.si].Dep < st.ri {
			done, blocked, err := st.trySend()
			if err != nil {
				return p.Right(), err
			}
			if blocked {
				wantOut = true
				break
			}
			progress = true
			if !done {
				continue
			}
		}
		if st.ri < len(recvs) {
			advanced, blocked, err := st.tryRecv()
			if err != nil {
				return p.Left(), err
			}
			if advanced {
				progress = true
			}
			wantIn = blocked
		}
		if progress {
			continue
		}
		if !wantIn && !wantOut {
			continue
		}

		if err := ctx.Err(); err != nil {
			return p.Left(), ctxReason(ctx)
		}
		wait := pollSlice
		if hasDeadline {
			wait = min(wait, time.Until(deadline)+time.Millisecond)
			if wait <= 0 {
				// past the deadline, before ctx's own timer has fired
				return p.Left(), fmt.Errorf("%w: %w", allreduce.ErrDeadline, context.DeadlineExceeded)
			}
		}
		if idle := p.OnWait; idle != nil && idle() {
			// The caller's work instead of a sleep; let the process's
			// other goroutines have their turn too, then look again.
			runtime.Gosched()
			continue
		}
		if wantIn {
			st.setLowat()
		}
		if peer, err := st.poll(wantIn, wantOut, wait); err != nil {
			return peer, err
		}
	}
	return 0, nil
}

// trySend writes as much of message si as the socket takes. done reports
// that the message is complete, blocked that the socket is full.
func (st *loopState) trySend() (done, blocked bool, err error) {
	m := st.p.Sends[st.si]
	if st.sOff == 0 {
		p := st.p.Payload(m)
		st.sPayload = p
		link.PutFrameHeader(&st.sHdr, st.tag, len(p))
	}
	total := link.FrameHeader + len(st.sPayload)
	iov := st.sIov[:0]
	if st.sOff < link.FrameHeader {
		iov = append(iov, iovec(st.sHdr[st.sOff:]))
		if len(st.sPayload) > 0 {
			iov = append(iov, iovec(st.sPayload))
		}
	} else {
		iov = append(iov, iovec(st.sPayload[st.sOff-link.FrameHeader:]))
	}
	st.sMsg.Iov = &iov[0]
	st.sMsg.SetIovlen(len(iov))
	race.ReleaseMerge(unsafe.Pointer(&race.Net))
	n, _, errno := syscall.Syscall(syscall.SYS_SENDMSG, uintptr(st.ofd), uintptr(unsafe.Pointer(&st.sMsg)),
		syscall.MSG_DONTWAIT|syscall.MSG_NOSIGNAL)
	if errno != 0 {
		blocked, err := callFailed(errno)
		return false, blocked, err
	}
	st.sOff += int(n)
	if st.sOff < total {
		return false, false, nil
	}
	st.si++
	st.sOff = 0
	st.sPayload = nil
	return true, false, nil
}

// callFailed sorts the error of a non-blocking sendmsg or recvmsg: the
// socket cannot move now (EAGAIN: blocked), the call was interrupted
// (EINTR: try again), or the link is lost.
func callFailed(errno syscall.Errno) (blocked bool, err error) {
	switch errno {
	case syscall.EAGAIN:
		return true, nil
	case syscall.EINTR:
		return false, nil
	}
	return false, fmt.Errorf("%w: %v", allreduce.ErrPeerLost, errno)
}

// tryRecv reads what the socket holds of message ri, up to its end. A
// message that is stored as it comes goes straight into the buffer; one
// that is added (or decoded) goes through a scratch piece of recvPiece
// bytes, consumed right after each read while it is still in the cache.
// advanced reports that bytes came in, blocked that the socket had none.
func (st *loopState) tryRecv() (advanced, blocked bool, err error) {
	m := st.p.Recvs[st.ri]
	want := (m.Hi - m.Lo) * st.wes
	direct := st.p.Direct(m)
	// where the next payload bytes go
	var room []byte
	if direct {
		room = st.data[m.Lo*st.es+st.rOff : m.Hi*st.es]
	} else {
		if st.scratch == nil {
			st.scratch = st.p.Scratch(recvPiece)
		}
		room = st.scratch[st.rFill:recvPiece]
		room = room[:min(len(room), want-st.rOff)]
	}
	iov := st.rIov[:0]
	if st.rHdrOff < link.FrameHeader {
		iov = append(iov, iovec(st.rHdr[st.rHdrOff:]))
	}
	if len(room) > 0 {
		iov = append(iov, iovec(room))
	}
	var n int
	if b := st.in.br.Buffered(); b > 0 {
		// bytes read ahead with the handshake (none in practice)
		for _, v := range iov {
			p := unsafe.Slice(v.Base, v.Len)
			k, _ := st.in.br.Read(p[:min(len(p), b-n)])
			n += k
			if n == b || k < len(p) {
				break
			}
		}
	} else {
		st.rMsg.Iov = &iov[0]
		st.rMsg.SetIovlen(len(iov))
		k, _, errno := syscall.Syscall(syscall.SYS_RECVMSG, uintptr(st.ifd), uintptr(unsafe.Pointer(&st.rMsg)), syscall.MSG_DONTWAIT)
		race.Acquire(unsafe.Pointer(&race.Net))
		if errno != 0 {
			blocked, err := callFailed(errno)
			return false, blocked, err
		}
		if k == 0 {
			if st.rHdrOff == 0 {
				return false, false, fmt.Errorf("%w: %v", allreduce.ErrPeerLost, io.EOF)
			}
			return false, false, fmt.Errorf("%w: %v", allreduce.ErrPeerLost, io.ErrUnexpectedEOF)
		}
		n = int(k)
	}
	if st.rHdrOff < link.FrameHeader {
		h := min(n, link.FrameHeader-st.rHdrOff)
		st.rHdrOff += h
		n -= h
		if st.rHdrOff == link.FrameHeader {
			if err := st.checkHeader(); err != nil {
				return false, false, err
			}
		}
	}
	st.rOff += n
	if !direct {
		st.rFill += n
		st.consume(m)
	}
	if st.rHdrOff == link.FrameHeader && st.rOff == want {
		st.p.Finish(m)
		st.ri++
		st.rHdrOff, st.rOff, st.rDone, st.rFill = 0, 0, 0, 0
	}
	return true, false, nil
}

// checkHeader checks the tag and length of the frame header just read.
func (st *loopState) checkHeader() error {
	return st.p.CheckHeader(st.ri, binary.LittleEndian.Uint64(st.rHdr[0:]), int(binary.LittleEndian.Uint32(st.rHdr[8:])))
}

// consume adds (or decodes) the whole elements in the scratch piece into
// the buffer (dst[i] += piece[i], or dst[i] = widen(piece[i])) and keeps
// the bytes of a split element for the next read.
func (st *loopState) consume(m allreduce.Msg) {
	whole := st.rFill / st.wes
	if whole == 0 {
		return
	}
	st.p.Consume(m, st.rDone, st.scratch[:whole*st.wes])
	st.rDone += whole
	st.rFill = copy(st.scratch, st.scratch[whole*st.wes:st.rFill])
}

// setLowat asks the kernel to wake the reader only once the rest of the
// current message (header included, at most lowatCap bytes) is in. Never
// more than the current message: the next one may depend on what this
// rank sends after it.
func (st *loopState) setLowat() {
	m := st.p.Recvs[st.ri]
	rest := link.FrameHeader - st.rHdrOff + (m.Hi-m.Lo)*st.wes - st.rOff
	v := max(1, min(rest, lowatCap))
	if v == st.in.lowat {
		return
	}
	if syscall.SetsockoptInt(st.ifd, syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, v) == nil {
		st.in.lowat = v
	}
}

// poll sleeps until a socket is ready, one of them fails, or wait passes.
func (st *loopState) poll(in, out bool, wait time.Duration) (peer int, err error) {
	st.pfd[0] = pollFd{fd: int32(st.ifd)}
	st.pfd[1] = pollFd{fd: int32(st.ofd)}
	if in {
		st.pfd[0].events = pollIn
	}
	if out {
		st.pfd[1].events = pollOut
	}
	ts := syscall.NsecToTimespec(int64(wait))
	_, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&st.pfd[0])), 2,
		uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	if errno != 0 && errno != syscall.EINTR {
		return st.p.Left(), fmt.Errorf("%w: ppoll: %v", allreduce.ErrPeerLost, errno)
	}
	// Errors and hang-ups surface from the next sendmsg or recvmsg, except
	// on a socket the loop is not using right now.
	if !in && st.pfd[0].revents&(pollErr|pollHup) != 0 {
		return st.p.Left(), fmt.Errorf("%w: link from the left neighbour: %w", allreduce.ErrPeerLost, link.ErrLinkClosed)
	}
	if !out && st.pfd[1].revents&(pollErr|pollHup) != 0 {
		return st.p.Right(), fmt.Errorf("%w: link to the right neighbour: %w", allreduce.ErrPeerLost, link.ErrLinkClosed)
	}
	return 0, nil
}

// ctxReason turns the end of ctx into the ring's sentinel error.
func ctxReason(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", allreduce.ErrDeadline, context.DeadlineExceeded)
	}
	return fmt.Errorf("%w: %w", allreduce.ErrCanceled, context.Canceled)
}

func iovec(p []byte) unix.Iovec {
	v := unix.Iovec{Base: unsafe.SliceData(p)}
	v.SetLen(len(p))
	return v
}

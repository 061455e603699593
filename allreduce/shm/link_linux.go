package shm

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/internal/link"
	"github.com/infonce/infonce/allreduce/internal/race"
)

// A shared-memory link carries the frames of one ring link between two
// processes of one host through a byte ring in a file of /dev/shm mapped
// by both: the sender copies a frame in, the receiver copies it out, and
// neither goes through the kernel's network stack. The TCP connection the
// link started on stays open beside it, carrying nothing: its end tells
// each side that the other process is gone (the kernel closes a dead
// process's sockets).
//
// The segment is a header page and a ring of shmRing bytes. head (bytes
// written, by the sender) and tail (bytes read, by the receiver) only
// grow; the ring holds head−tail bytes at offsets taken modulo shmRing.
// A side that finds nothing to do spins briefly, then sleeps on a futex
// word of the shared page that the other side bumps (and wakes) after
// every move of head or tail.
const (
	shmMagic = 0x31474e49_52434e49 // "INCRING1": segment format 1
	shmPage  = 4096
	shmRing  = 4 << 20

	// Offsets in the header page, one cache line each.
	shmOffMagic  = 0   // uint64
	shmOffNonce  = 8   // 16 bytes: the opener proves it mapped this segment
	shmOffHead   = 64  // uint64
	shmOffTail   = 128 // uint64
	shmOffRSeq   = 192 // uint32 futex word the receiver sleeps on; +4: it sleeps
	shmOffWSeq   = 256 // uint32 futex word the sender sleeps on; +4: it sleeps
	shmOffClosed = 320 // uint32: the sender closed the link (after its last frame)

	// A side polls for a while before it sleeps on the futex. Where every
	// rank of the ring can have a core of its own (no more ranks than the
	// machine has cores) it polls longer, as MPI implementations do when
	// not oversubscribed: the peer is running and a wait is short, so
	// polling saves the sleep and wake-up. Where ranks outnumber the
	// cores, a polling rank only delays the one it waits for. Measured
	// with train jobs (docs/SCALING.md, "Worker defaults"): 2 pinned workers on 2 cores
	// gain about 2 % from 200 µs against 50 µs; 4 workers on 2 cores lose
	// 3.5 % at 200 µs and 36 % at 1 ms.
	shmSpinShared, shmSpinOwnCore = 50 * time.Microsecond, 200 * time.Microsecond
	// shmNap bounds one sleep, so that the liveness flags are read again.
	shmNap = 20 * time.Millisecond
)

// shmSeg is one mapping of a segment.
type shmSeg struct {
	mem                     []byte
	ring                    []byte
	head, tail              *atomic.Uint64
	rseq, rsleep            *atomic.Uint32
	wseq, wsleep            *atomic.Uint32
	closed                  *atomic.Uint32
	gone                    atomic.Bool  // the other process is gone (its TCP end closed)
	local                   atomic.Bool  // this side closed the link
	mu                      sync.RWMutex // read-held while mem is used; unmap takes it whole
	unmapped                bool
	watched                 net.Conn
	watchDone               chan struct{}
	name                    string        // the file, until it is unlinked
	spin                    time.Duration // how long await polls before it sleeps
	idle                    func() bool   // Config.OnWait of the ring, for await
	startedWatch, unlinking sync.Once
}

func (s *shmSeg) u64(off int) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&s.mem[off])) }
func (s *shmSeg) u32(off int) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&s.mem[off])) }

func mapSeg(f *os.File) (*shmSeg, error) {
	mem, err := unix.Mmap(int(f.Fd()), 0, shmPage+shmRing, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	s := &shmSeg{mem: mem, ring: mem[shmPage:], watchDone: make(chan struct{})}
	s.head, s.tail = s.u64(shmOffHead), s.u64(shmOffTail)
	s.rseq, s.rsleep = s.u32(shmOffRSeq), s.u32(shmOffRSeq+4)
	s.wseq, s.wsleep = s.u32(shmOffWSeq), s.u32(shmOffWSeq+4)
	s.closed = s.u32(shmOffClosed)
	return s, nil
}

// createShm makes a new segment in dir and returns it with its file name
// and the nonce written into it.
func createShm(dir string) (*shmSeg, string, [16]byte, error) {
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, "", nonce, err
	}
	name := filepath.Join(dir, "infonce-ring-"+hex.EncodeToString(nonce[:8]))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, "", nonce, err
	}
	defer f.Close()
	if err := f.Truncate(shmPage + shmRing); err != nil {
		os.Remove(name)
		return nil, "", nonce, err
	}
	s, err := mapSeg(f)
	if err != nil {
		os.Remove(name)
		return nil, "", nonce, err
	}
	copy(s.mem[shmOffNonce:], nonce[:])
	s.u64(shmOffMagic).Store(shmMagic)
	s.name = name
	return s, name, nonce, nil
}

// openShm maps the segment a peer created and checks its nonce.
func openShm(name string, nonce [16]byte) (*shmSeg, error) {
	if filepath.Dir(name) != shmDir || len(filepath.Base(name)) != len("infonce-ring-")+16 {
		return nil, fmt.Errorf("%w: shared-memory segment name %q", link.ErrMalformed, name)
	}
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() != shmPage+shmRing {
		return nil, fmt.Errorf("shared-memory segment %s: not a ring segment", name)
	}
	s, err := mapSeg(f)
	if err != nil {
		return nil, err
	}
	if s.u64(shmOffMagic).Load() != shmMagic || string(s.mem[shmOffNonce:shmOffNonce+16]) != string(nonce[:]) {
		s.unmap()
		return nil, fmt.Errorf("shared-memory segment %s: another segment than the peer's", name)
	}
	return s, nil
}

// shmDir is where segments are created: a tmpfs on Linux.
const shmDir = "/dev/shm"

// unlink removes the segment's file (the mappings stay).
func (s *shmSeg) unlink() {
	s.unlinking.Do(func() {
		if s.name != "" {
			os.Remove(s.name)
		}
	})
}

// watch reads the link's TCP connection until it ends, then marks the
// peer gone and wakes this side.
func (s *shmSeg) watch(c net.Conn) {
	s.startedWatch.Do(func() {
		// The TCP receive path may have made the socket blocking; the
		// watcher's read goes through the network poller again, so that
		// closing the connection ends it.
		if sc, ok := c.(syscall.Conn); ok {
			if raw, err := sc.SyscallConn(); err == nil {
				raw.Control(func(fd uintptr) { _ = syscall.SetNonblock(int(fd), true) })
			}
		}
		s.watched = c
		go func() {
			defer close(s.watchDone)
			var b [1]byte
			for {
				if _, err := c.Read(b[:]); err != nil {
					break
				}
			}
			s.gone.Store(true)
			s.wakeAll()
		}()
	})
}

func (s *shmSeg) wakeAll() {
	s.mu.RLock() // the mapping must outlive the wake
	defer s.mu.RUnlock()
	if s.unmapped {
		return
	}
	s.rseq.Add(1)
	s.wseq.Add(1)
	futexWake(s.rseq)
	futexWake(s.wseq)
}

// shutdown closes the link from this side: the other side learns it from
// the closed flag (a sender's graceful close) or from the TCP end; the
// waits of this side end at once. It unmaps the segment once no send or
// recv uses it.
func (s *shmSeg) shutdown(sender, graceful bool) {
	s.local.Store(true)
	if sender && graceful {
		s.closed.Store(1)
	}
	s.wakeAll() // ends this side's wait, wakes the other side
	if s.watched != nil {
		if tc, ok := s.watched.(*net.TCPConn); ok {
			if !graceful {
				tc.SetLinger(0)
			}
			tc.CloseRead() // wakes the watcher even on a blocking socket
		}
		s.watched.Close()
		<-s.watchDone
	}
	s.unlink()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unmap()
}

func (s *shmSeg) unmap() {
	if !s.unmapped {
		s.unmapped = true
		_ = unix.Munmap(s.mem)
	}
}

var errShmClosed = errors.New("shared-memory link closed")

// await waits until ready() holds, first spinning, then sleeping on seq
// (sleep flags the sleep for the waker). It fails when the link is closed
// locally or the peer is gone.
func (s *shmSeg) await(ready func() bool, seq, sleep *atomic.Uint32) error {
	closed := func() error {
		if s.local.Load() {
			return errShmClosed
		}
		if s.gone.Load() {
			return fmt.Errorf("%w: the peer process closed the link", allreduce.ErrPeerLost)
		}
		return nil
	}
	if ok, err := poll(ready, closed, cmp.Or(s.spin, shmSpinShared), s.idle); ok || err != nil {
		return err
	}
	for {
		v := seq.Load()
		sleep.Store(1)
		if ready() {
			sleep.Store(0)
			return nil
		}
		if err := closed(); err != nil {
			sleep.Store(0)
			return err
		}
		futexWait(seq, v, shmNap)
		sleep.Store(0)
	}
}

// Out is the sending half of a shared-memory link.
type Out struct {
	s    *shmSeg
	hdr  [link.FrameHeader]byte
	once sync.Once
}

func (o *Out) Send(tag uint64, p []byte) error {
	s := o.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.unmapped {
		return fmt.Errorf("%w: %v", allreduce.ErrPeerLost, errShmClosed)
	}
	link.PutFrameHeader(&o.hdr, tag, len(p))
	if err := o.write(o.hdr[:]); err != nil {
		return err
	}
	return o.write(p)
}

// write copies b into the ring as space frees up.
func (o *Out) write(b []byte) error {
	s := o.s
	for len(b) > 0 {
		head := s.head.Load()
		free := func() bool { return head-s.tail.Load() < shmRing }
		if !free() {
			if err := s.await(free, s.wseq, s.wsleep); err != nil {
				return fmt.Errorf("%w: %v", allreduce.ErrPeerLost, err)
			}
		}
		n := min(uint64(len(b)), shmRing-(head-s.tail.Load()))
		at := head % shmRing
		c := copy(s.ring[at:min(at+n, shmRing)], b)
		copy(s.ring[:n-uint64(c)], b[c:n])
		// As over the network: reading b happens before whatever the
		// receiver does after it has the bytes (for the race detector,
		// which cannot follow the bytes through the shared mapping).
		race.ReleaseMerge(unsafe.Pointer(&race.Net))
		s.head.Store(head + n)
		signal(s.rseq, s.rsleep)
		b = b[n:]
	}
	return nil
}

func (o *Out) Close(graceful bool) {
	o.once.Do(func() { o.s.shutdown(true, graceful) })
}

// In is the receiving half of a shared-memory link.
type In struct {
	s    *shmSeg
	hdr  [link.FrameHeader]byte
	once sync.Once
}

func (in *In) Recv(_ context.Context, dst []byte) (uint64, int, error) {
	s := in.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.unmapped {
		return 0, 0, fmt.Errorf("%w: %v", allreduce.ErrPeerLost, errShmClosed)
	}
	if err := in.read(in.hdr[:]); err != nil {
		return 0, 0, err
	}
	tag := binary.LittleEndian.Uint64(in.hdr[0:])
	n64 := uint64(binary.LittleEndian.Uint32(in.hdr[8:]))
	if n64 > uint64(len(dst)) || n64 > allreduce.MaxFrameBytes {
		return tag, 0, fmt.Errorf("%w: frame of %d bytes exceeds %d: %v", allreduce.ErrMismatch, n64, min(len(dst), allreduce.MaxFrameBytes), link.ErrMalformed)
	}
	if err := in.read(dst[:n64]); err != nil {
		return tag, 0, err
	}
	return tag, int(n64), nil
}

// read copies len(b) bytes out of the ring as they arrive. The frames a
// sender wrote before it closed are read before the close is seen.
func (in *In) read(b []byte) error {
	s := in.s
	for len(b) > 0 {
		tail := s.tail.Load()
		avail := func() bool { return s.head.Load() != tail || s.closed.Load() != 0 }
		if !avail() {
			if err := s.await(avail, s.rseq, s.rsleep); err != nil {
				return fmt.Errorf("%w: %v", allreduce.ErrPeerLost, err)
			}
		}
		n := min(uint64(len(b)), s.head.Load()-tail)
		if n == 0 { // closed, and nothing left
			return fmt.Errorf("%w: the peer closed the link", allreduce.ErrPeerLost)
		}
		race.Acquire(unsafe.Pointer(&race.Net)) // before b is written: see write
		at := tail % shmRing
		c := copy(b, s.ring[at:min(at+n, shmRing)])
		copy(b[c:n], s.ring[:n-uint64(c)])
		s.tail.Store(tail + n)
		signal(s.wseq, s.wsleep)
		b = b[n:]
	}
	return nil
}

func (in *In) Close() {
	in.once.Do(func() { in.s.shutdown(false, false) })
}

// signal tells the other side that head or tail moved: it bumps the futex
// word it waits on, and wakes it if it sleeps.
func signal(seq, sleep *atomic.Uint32) {
	seq.Add(1)
	if sleep.Load() != 0 {
		futexWake(seq)
	}
}

// The futex(2) operations (linux/futex.h).
const (
	futexOpWait = 0
	futexOpWake = 1
)

// futexWait sleeps while *w == v, at most d (FUTEX_WAIT on a shared
// mapping: not the private variant, so that another process can wake it).
func futexWait(w *atomic.Uint32, v uint32, d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexOpWait, uintptr(v),
		uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// futexWake wakes the sleepers on w.
func futexWake(w *atomic.Uint32) {
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexOpWake, uintptr(1<<30),
		0, 0, 0)
}

// shmOutLink is the sending half over seg; conn, the link's TCP
// connection, tells when the receiving process is gone. ownCores says
// that the ring's ranks do not outnumber the machine's cores.
func shmOutLink(seg *shmSeg, conn net.Conn, ownCores bool, idle func() bool) *Out {
	seg.setWait(ownCores, idle)
	seg.watch(conn)
	return &Out{s: seg}
}

// shmInLink is the receiving half over seg; conn tells when the sending
// process is gone.
func shmInLink(seg *shmSeg, conn net.Conn, ownCores bool, idle func() bool) *In {
	seg.setWait(ownCores, idle)
	seg.watch(conn)
	return &In{s: seg}
}

// setWait sets how await waits: how long it polls, and the caller's work
// it does meanwhile (Config.OnWait).
func (s *shmSeg) setWait(ownCores bool, idle func() bool) {
	s.spin = shmSpinShared
	if ownCores {
		s.spin = shmSpinOwnCore
	}
	s.idle = idle
}

// machineCores is the number of cores the machine has online (not only
// those this process may run on), or 0 when it cannot be read.
func machineCores() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return 0
	}
	return countCPUList(strings.TrimSpace(string(b)))
}

// countCPUList counts the CPUs of a kernel CPU list such as "0-3,6,8-9";
// 0 for a malformed one.
func countCPUList(list string) int {
	n := 0
	for part := range strings.SplitSeq(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || b < a || a < 0 {
			return 0
		}
		n += b - a + 1
	}
	return n
}

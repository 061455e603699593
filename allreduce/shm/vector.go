package shm

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/internal/race"
	"github.com/infonce/infonce/vec"
)

// SharedVector is float32 storage that the ranks of one machine can read
// in each other's memory. A worker allocates its gradient buffer in one and
// hands it to every ring it builds (Config.Shared). When every rank of a
// ring is on this machine and linked through shared memory, an AllReduce
// of a slice of the vector is then summed in place, each rank reading its
// peers' copies directly: the reduce-scatter reads the other ranks' part
// of its own segment and the all-gather copies the other ranks' summed
// segments, about half the memory traffic of moving frames through a ring
// of byte queues (docs/SCALING.md, "In place").
//
// Until a ring publishes it, the vector is private memory; each ring that
// uses it moves its pages into a new file in /dev/shm, keeping their
// contents and addresses, and removes the file once the peers have mapped
// it. Elsewhere than on Linux it is ordinary memory and rings never share
// it.
type SharedVector struct {
	n      int
	mem    []byte    // the header page, then the elements
	floats []float32 // mem[vecHeader:] as n float32

	mu     sync.Mutex
	inUse  bool // a ring has it published
	closed bool
	name   string // the published file, until it is removed
}

// vecHeader is the size of the header in front of a SharedVector's
// elements: one page, so that the elements start page-aligned.
const vecHeader = 4096

// Offsets in a SharedVector's header, one cache line per word written by
// its owner during a collective.
const (
	vecMagic      = 0x31304345_5643_4e49 // "INCVEC01": header format 1
	vecOffMagic   = 0                    // uint64
	vecOffNonce   = 8                    // 16 bytes: an opener proves it mapped this file
	vecOffLen     = 32                   // uint64: the number of elements
	vecOffArrived = 64                   // uint32: seq of the last all-reduce whose input is ready
	vecOffOpOff   = 72                   // uint64: that all-reduce's offset in the vector
	vecOffOpLen   = 80                   // uint64: and its length
	vecOffReduced = 128                  // uint32: seq of the last all-reduce whose own segment is summed
	vecOffCopied  = 192                  // uint32: seq of the last all-reduce this rank finished reading
)

// Len is the number of elements.
func (v *SharedVector) Len() int { return v.n }

// Floats returns the elements. The slice stays valid, at the same address,
// until Close.
func (v *SharedVector) Floats() []float32 { return v.floats }

// acquire marks the vector as used by a ring; false when another ring
// (an older generation not yet closed) still has it, or it is closed.
func (v *SharedVector) acquire() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.inUse || v.closed {
		return false
	}
	v.inUse = true
	return true
}

func (v *SharedVector) release() {
	v.mu.Lock()
	v.inUse = false
	v.mu.Unlock()
}

// Close releases the memory; the slice of Floats must no longer be used,
// and no ring built with the vector may be open.
func (v *SharedVector) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil
	}
	if v.inUse {
		return fmt.Errorf("allreduce: shared vector closed while a ring uses it")
	}
	v.closed = true
	return v.free()
}

// vecOfferBytes is one rank's record in the all-gather of shared-vector
// offers: the name's length, the name, the element count at
// vecOfferBytes−24 and the nonce at vecOfferBytes−16. A zero record offers
// nothing.
const vecOfferBytes = 96

// vecView is one mapping of a rank's vector: its elements and the words of
// its header.
type vecView struct {
	mem          []byte
	g            []float32
	phase        [numPhases]*atomic.Uint32 // the sequence words, by phase
	opOff, opLen *atomic.Uint64
	unmap        func()
}

// The phases of an in-place all-reduce, each with a sequence word in the
// header that its owner sets to the op's number once it is through.
const (
	phaseArrived = iota // the input is ready
	phaseReduced        // the rank's own segment is summed
	phaseCopied         // the rank finished reading its peers' elements
	numPhases
)

func (w *vecView) magic() *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&w.mem[vecOffMagic]))
}

func newVecView(mem []byte, n int, unmap func()) *vecView {
	u32 := func(off int) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&mem[off])) }
	u64 := func(off int) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&mem[off])) }
	return &vecView{
		mem: mem, g: unsafe.Slice((*float32)(unsafe.Pointer(&mem[vecHeader])), n),
		phase: [numPhases]*atomic.Uint32{u32(vecOffArrived), u32(vecOffReduced), u32(vecOffCopied)},
		opOff: u64(vecOffOpOff), opLen: u64(vecOffOpLen), unmap: unmap,
	}
}

// direct is a ring's in-place all-reduce over the ranks' shared vectors.
type direct struct {
	vec   *SharedVector
	self  *vecView
	peers []*vecView // by rank; nil at this rank
	// alive reports whether the neighbours' processes are still there
	// (the shared-memory links' TCP ends); nil error while they are.
	alive func() error
	abort atomic.Bool // the ring failed or closed: every wait ends
	spin  time.Duration
	idle  func() bool // Config.OnWait
}

// Offset reports where buf lies in the vector, if it does.
func (d *direct) Offset(buf []float32) (int, bool) { return allreduce.OffsetIn(d.vec.floats, buf) }

// span is the element range [off, off+n) of the vector.
type span struct{ off, n int }

// evenSpan is segment i of n elements cut into k contiguous segments
// whose sizes differ by at most one (the first n mod k one longer), as
// the ring's reduce-scatter cuts them.
func evenSpan(n, k, i int) span {
	q, r := n/k, n%k
	s := span{i*q + min(i, r), q}
	if i < r {
		s.n++
	}
	return s
}

// seqReached reports whether the counter value v has reached seq, counting
// modulo 2³².
func seqReached(v, seq uint32) bool { return int32(v-seq) >= 0 }

// AllReduce implements AllReduce of vec[off : off+n] for op number seq:
//
//  1. publish (off, n) and arrived = seq; wait until every peer arrived;
//  2. the reduce-scatter: with the range cut into K even segments S_0…S_{K−1},
//     rank k sums its own S_k in place, g_k[S_k] += g_j[S_k] for j ≠ k in
//     rank order; then reduced = seq;
//  3. the all-gather: once rank j has reduced, g_k[S_j] = g_j[S_j];
//     then copied = seq;
//  4. wait until every peer copied, so that none still reads this rank's
//     elements when the caller writes them again.
//
// Every segment is summed by one rank in one fixed order, so every rank
// ends with identical values. It returns the rank it was waiting for when
// it failed.
func (d *direct) AllReduce(ctx context.Context, rank int, seq uint32, off, n int) (int, error) {
	k := len(d.peers)
	d.self.opOff.Store(uint64(off))
	d.self.opLen.Store(uint64(n))
	d.signal(phaseArrived, seq)
	if j, err := d.awaitPeers(ctx, phaseArrived, seq, func(j int, p *vecView) error {
		if p.opOff.Load() != uint64(off) || p.opLen.Load() != uint64(n) {
			return fmt.Errorf("%w: rank %d all-reduces elements [%d, %d) of the shared vector, this rank [%d, %d)",
				allreduce.ErrMismatch, j, p.opOff.Load(), p.opOff.Load()+p.opLen.Load(), off, off+n)
		}
		return nil
	}); err != nil {
		return j, err
	}
	mine := evenSpan(n, k, rank)
	lo, hi := off+mine.off, off+mine.off+mine.n
	for _, p := range d.peers {
		if p != nil {
			addF32(d.self.g[lo:hi], p.g[lo:hi])
		}
	}
	d.signal(phaseReduced, seq)
	if j, err := d.awaitPeers(ctx, phaseReduced, seq, func(j int, p *vecView) error {
		s := evenSpan(n, k, j)
		copy(d.self.g[off+s.off:off+s.off+s.n], p.g[off+s.off:off+s.off+s.n])
		return nil
	}); err != nil {
		return j, err
	}
	d.signal(phaseCopied, seq)
	return d.awaitPeers(ctx, phaseCopied, seq, nil)
}

// awaitPeers waits, peer by peer in rank order, until the peer's word of
// phase reaches seq, then calls then (when not nil) for it. It returns the
// peer it failed on, or this rank.
func (d *direct) awaitPeers(ctx context.Context, phase int, seq uint32, then func(j int, p *vecView) error) (int, error) {
	me := 0
	for j, p := range d.peers {
		if p == nil {
			me = j
			continue
		}
		if err := d.await(ctx, p.phase[phase], seq); err != nil {
			return j, err
		}
		if then != nil {
			if err := then(j, p); err != nil {
				return j, err
			}
		}
	}
	return me, nil
}

// await waits until *w reaches seq: it polls for d.spin, then sleeps on the
// word (which its owner wakes after each store), at most vecNap at a time,
// so that a dead neighbour, the ring's failure and ctx are noticed.
func (d *direct) await(ctx context.Context, w *atomic.Uint32, seq uint32) error {
	check := func() error {
		if d.abort.Load() {
			return allreduce.ErrClosed
		}
		if err := d.alive(); err != nil {
			return err
		}
		return ctx.Err()
	}
	if ok, err := poll(func() bool { return seqReached(w.Load(), seq) }, check, d.spin, d.idle); ok || err != nil {
		return err
	}
	for {
		v := w.Load()
		if seqReached(v, seq) {
			return nil
		}
		if err := check(); err != nil {
			return err
		}
		futexWait(w, v, vecNap)
	}
}

// poll is the first phase of a wait on shared memory: it polls ready for
// about spin, and every 64 polls calls check (which ends the wait with its
// error) and idle, the caller's work (Config.OnWait). While idle does work
// the spin starts over, and after each piece the other goroutines of the
// process get their turn: the sending half of the very collective may be
// one of them. ok reports that ready held; false with a nil error means
// the spin is over and the caller should sleep.
func poll(ready func() bool, check func() error, spin time.Duration, idle func() bool) (ok bool, err error) {
	until := time.Now().Add(spin)
	for i := 0; ; i++ {
		if ready() {
			return true, nil
		}
		if i&63 != 63 {
			continue
		}
		if err := check(); err != nil {
			return false, err
		}
		if idle != nil && idle() {
			until = time.Now().Add(spin)
		} else if time.Now().After(until) {
			return false, nil
		}
		runtime.Gosched()
	}
}

// vecNap bounds one sleep of a direct all-reduce's wait.
const vecNap = 2 * time.Millisecond

// signal stores seq into this rank's word of phase and wakes the peers
// sleeping on it.
func (d *direct) signal(phase int, seq uint32) {
	w := d.self.phase[phase]
	w.Store(seq)
	futexWake(w)
}

// Stop ends every wait of a collective in progress (the ring failed or
// closed): the waits see abort, and the sleepers are woken.
func (d *direct) Stop() {
	d.abort.Store(true)
	for _, p := range d.peers {
		if p != nil {
			for _, w := range p.phase {
				futexWake(w)
			}
		}
	}
}

// Close unmaps the peers' vectors and gives the vector back for the next
// ring; no collective may be running.
func (d *direct) Close() {
	for _, p := range d.peers {
		if p != nil {
			p.unmap()
		}
	}
	d.vec.release()
}

// SetupDirect decides, after the links of a new TCP ring have moved to
// shared memory where they could, whether the ring all-reduces its
// shared vector in place. Every rank of a TCP ring takes part in its two
// all-gathers. A rank offers its vector when it has one, both its links
// use shared memory, and the wire is float32; it opens every other rank's
// offer; the ring goes direct only when every rank opened every other's.
// The vector's file is removed once the all-gathers are over.
//
// out and in are this rank's shared-memory links (nil where a link stays
// on TCP). When the ring goes direct, SetupDirect hands it the in-place
// sum (allreduce.Ring.SetInPlace).
func SetupDirect(ctx context.Context, r *allreduce.Ring, out *Out, in *In) error {
	k, rank := r.Size(), r.Rank()
	cfg := r.Config()
	v, _ := cfg.Shared.(*SharedVector)
	var rec [vecOfferBytes]byte
	offered := false
	if v != nil && cfg.Wire == allreduce.Float32 && linksShared(out, in) && v.acquire() {
		name, nonce, err := v.publish()
		if err == nil && len(name) < vecOfferBytes-25 {
			rec[0] = byte(len(name))
			copy(rec[1:], name)
			binary.LittleEndian.PutUint64(rec[vecOfferBytes-24:], uint64(v.n))
			copy(rec[vecOfferBytes-16:], nonce[:])
			offered = true
		} else {
			if err == nil {
				v.unpublish()
			}
			cfg.Logger.Debug("allreduce: the shared vector is not offered", "err", err)
			v.release()
		}
	}
	offers, err := gatherRecords(ctx, r, rec[:])
	if err != nil {
		if offered {
			v.unpublish()
			v.release()
		}
		return fmt.Errorf("shared-vector offers: %w", err)
	}
	peers := make([]*vecView, k)
	closePeers := func() {
		for i, p := range peers {
			if p != nil {
				p.unmap()
				peers[i] = nil
			}
		}
	}
	opened := offered
	for j := 0; j < k && opened; j++ {
		if j == rank {
			continue
		}
		name, n, nonce, ok := parseVecOffer(offers[j*vecOfferBytes : (j+1)*vecOfferBytes])
		if !ok || n != v.n {
			opened = false
			break
		}
		p, err := openVec(name, nonce, n)
		if err != nil {
			cfg.Logger.Debug("allreduce: a peer's shared vector cannot be opened here", "rank", j, "err", err)
			opened = false
			break
		}
		peers[j] = p
	}
	var yes [1]byte
	if opened {
		yes[0] = 1
	}
	all, err := gatherRecords(ctx, r, yes[:])
	if offered {
		v.unpublish() // every peer has it mapped, or never will
	}
	ok := err == nil && opened
	for _, b := range all {
		ok = ok && b == 1
	}
	if !ok {
		closePeers()
		if offered {
			v.release()
		}
		if err != nil {
			return fmt.Errorf("shared-vector answers: %w", err)
		}
		return nil
	}
	d := &direct{vec: v, self: v.view(), peers: peers, alive: func() error { return linksAlive(out, in) }, spin: shmSpinShared, idle: cfg.OnWait}
	if k <= machineCores() {
		d.spin = shmSpinOwnCore
	}
	r.SetInPlace(d)
	cfg.Logger.Debug("allreduce: all-reduces of the shared vector run in place", "rank", rank, "size", k)
	return nil
}

// parseVecOffer decodes a peer's shared-vector offer; ok is false for an
// empty or malformed one. openVec checks the name further.
func parseVecOffer(rec []byte) (name string, n int, nonce [16]byte, ok bool) {
	if len(rec) != vecOfferBytes || rec[0] == 0 || int(rec[0]) > vecOfferBytes-25 {
		return "", 0, nonce, false
	}
	u := binary.LittleEndian.Uint64(rec[vecOfferBytes-24:])
	if u == 0 || u > 1<<40 {
		return "", 0, nonce, false
	}
	copy(nonce[:], rec[vecOfferBytes-16:])
	return string(rec[1 : 1+rec[0]]), int(u), nonce, true
}

// addF32 implements dst += src (package vec's kernel, which the race
// detector cannot see).
func addF32(dst, src []float32) {
	src = src[:len(dst)]
	if len(dst) == 0 {
		return
	}
	race.Read(unsafe.Pointer(&src[0]), 4*len(src))
	race.Write(unsafe.Pointer(&dst[0]), 4*len(dst))
	vec.Add(dst, src)
}

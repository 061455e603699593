package allreduce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Ring is one rank's view of one generation of the ring. Collectives on a
// Ring are serialized; every rank must issue the same collectives in the
// same order with matching sizes (a mismatch is detected and reported as
// ErrMismatch).
//
// A collective that fails breaks the ring: the links are closed, the
// neighbours fail in turn, and every later call returns the first error.
// Recovery is a new generation (dataplane.NewRing with a higher Generation).
type Ring struct {
	cfg  Config
	size int
	t    Transport // nil when size == 1

	opMu sync.Mutex // serializes collectives
	seq  uint32     // collective sequence number, guarded by opMu

	// scratch space, guarded by opMu: s* for the sending goroutine, r* for
	// the receiving one
	sWire, sComp, rWire, rComp []byte
	sends, recvs               []Msg
	shiftBuf                   []byte // Shift's send and receive buffer
	comp                       *compressor

	mu      sync.Mutex
	broken  error // first failure; sticky
	closed  bool
	release func() // set by OnClose: unregisters from the dataplane.Server

	fuse fuseQueue

	plan Pass // the pass handed to a Passer, guarded by opMu

	inPlace InPlaceSum // in-place all-reduce of cfg.Shared; nil when not
}

// NewRingWithTransport builds a ring over a caller-supplied transport (t may
// be nil for a ring of one rank). dataplane.NewRing and NewMemRings use it.
func NewRingWithTransport(cfg Config, t Transport) (*Ring, error) {
	if !hostLittleEndian {
		return nil, errors.New("allreduce: big-endian hosts are not supported (the wire is little endian)")
	}
	c, err := cfg.WithDefaults(len(cfg.Peers))
	if err != nil {
		return nil, err
	}
	if len(c.Peers) > 1 && t == nil {
		return nil, fmt.Errorf("allreduce: ring of %d ranks without a transport", len(c.Peers))
	}
	r := &Ring{cfg: c, size: len(c.Peers), t: t}
	if c.Compression != "" {
		if r.comp, err = newCompressor(c.Compression); err != nil {
			return nil, err
		}
	}
	r.fuse.init(r)
	return r, nil
}

// Rank returns this rank.
func (r *Ring) Rank() int { return r.cfg.Rank }

// Size returns the number of ranks.
func (r *Ring) Size() int { return r.size }

// Generation returns the ring's generation.
func (r *Ring) Generation() uint64 { return r.cfg.Generation }

// Config returns the ring's configuration with defaults filled in.
func (r *Ring) Config() Config { return r.cfg }

func (r *Ring) left() int  { return (r.cfg.Rank + r.size - 1) % r.size }
func (r *Ring) right() int { return (r.cfg.Rank + 1) % r.size }

// Err returns the error that broke the ring, or nil.
func (r *Ring) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.broken
}

// fail records reason as the ring's failure unless one is already recorded,
// closes the transport and returns the recorded failure.
func (r *Ring) fail(reason error) error {
	r.mu.Lock()
	if r.broken == nil {
		r.broken = reason
		r.cfg.Logger.Warn("allreduce: ring broken", "generation", r.cfg.Generation, "rank", r.cfg.Rank, "err", reason)
	}
	reason = r.broken
	t := r.t
	r.mu.Unlock()
	if r.inPlace != nil {
		r.inPlace.Stop()
	}
	if t != nil {
		t.Close()
	}
	return reason
}

// Close closes the links and stops the fusion worker; pending buckets fail
// with ErrClosed. A ring closed while idle lets its right neighbour read
// everything sent before the link goes away; a collective running
// concurrently fails. Close is idempotent.
func (r *Ring) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	release := r.release
	r.mu.Unlock()
	if r.opMu.TryLock() {
		r.mu.Lock()
		healthy := r.broken == nil
		if healthy {
			r.broken = ErrClosed
		}
		r.mu.Unlock()
		if g, ok := r.t.(GracefulCloser); ok && healthy {
			g.CloseGracefully()
		} else {
			r.fail(ErrClosed)
		}
		r.opMu.Unlock()
	} else {
		r.fail(ErrClosed)
	}
	r.fuse.stop()
	r.opMu.Lock() // wait for a collective in progress to return
	r.comp.close()
	if r.inPlace != nil {
		r.inPlace.Close()
	}
	r.opMu.Unlock()
	if release != nil {
		release()
	}
	return nil
}

// op kinds, carried in message tags.
const (
	opAllReduce = iota + 1
	opAllReduce64
	opAllGather
	opReduceScatter
	opBroadcast
	opBarrier
	opShift
)

var opNames = [...]string{"", "allreduce", "allreduce64", "allgather", "reducescatter", "broadcast", "barrier", "shift"}

// tag flags.
const (
	flagCompressed = 1 << 0
)

// collective runs body as collective op under the ring's deadline rules and
// turns its failure into a *PeerError that breaks the ring.
func (r *Ring) collective(ctx context.Context, op int, body func(ctx context.Context, tag uint64) (peer int, err error)) error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	name := opNames[op]
	if err := r.Err(); err != nil {
		return r.peerError(name, r.left(), fmt.Errorf("ring unusable after an earlier failure: %w", err))
	}
	if err := ctx.Err(); err != nil {
		return r.peerError(name, r.left(), ctxReason(ctx))
	}
	r.seq++
	tag := uint64(r.seq)<<32 | uint64(op)<<16
	if r.size == 1 {
		_, err := body(ctx, tag)
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.cfg.Timeout)
		defer cancel()
	}
	stop := context.AfterFunc(ctx, func() { r.fail(ctxReason(ctx)) })
	peer, err := body(ctx, tag)
	stop()
	if err == nil {
		return nil
	}
	reason := r.fail(classify(ctx, err))
	return r.peerError(name, peer, reason)
}

func (r *Ring) peerError(op string, peer int, err error) *PeerError {
	return &PeerError{Op: op, Peer: r.cfg.Peers[peer], Rank: peer, Local: r.cfg.Rank, Generation: r.cfg.Generation, Err: err}
}

// ctxReason turns the end of an operation's context into a sentinel error.
func ctxReason(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrDeadline, context.DeadlineExceeded)
	}
	return fmt.Errorf("%w: %w", ErrCanceled, context.Canceled)
}

// classify maps a transport or protocol error to a sentinel-wrapping reason.
func classify(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, ErrMismatch), errors.Is(err, ErrPeerLost), errors.Is(err, ErrGeneration),
		errors.Is(err, ErrDeadline), errors.Is(err, ErrCanceled), errors.Is(err, ErrClosed):
		return err
	case ctx.Err() != nil:
		return ctxReason(ctx)
	}
	return fmt.Errorf("%w: %v", ErrPeerLost, err)
}

// Msg is one message of a pass: the element range [Lo, Hi) of the
// buffer it comes from or goes to. A send waits until the receive with
// index Dep (if Dep >= 0) has completed; a receive adds into the buffer
// (Reduce) or overwrites it, and may round the result to the wire
// precision (Round).
type Msg struct {
	Lo, Hi int
	Dep    int
	Reduce bool
	Round  bool
}

// elem describes the element type of a pass.
type elem int

const (
	elemByte elem = iota
	elemF32
	elemF64
)

func (e elem) size() int {
	switch e {
	case elemF32:
		return 4
	case elemF64:
		return 8
	}
	return 1
}

// pass moves the messages of one collective: a goroutine sends r.sends in
// order while the caller receives r.recvs in order, so sending, receiving
// and adding overlap chunk by chunk. data is the buffer as bytes.
func (r *Ring) pass(ctx context.Context, tag uint64, data []byte, e elem) (peer int, err error) {
	if p, ok := r.t.(Passer); ok && r.comp == nil {
		r.plan = Pass{r: r, Tag: tag, Data: data, Sends: r.sends, Recvs: r.recvs, e: e}
		r.plan.init()
		peer, handled, err := p.Pass(ctx, &r.plan)
		r.plan.Data = nil
		if handled {
			if err != nil {
				r.fail(classify(ctx, err))
			}
			return peer, err
		}
	}
	var (
		recvDone atomic.Int64
		notify   = make(chan struct{}, 1)
		abort    = make(chan struct{})
		sendErr  = make(chan error, 1)
		once     sync.Once
	)
	// The first side to fail names the peer and breaks the ring, which
	// unblocks the other side.
	first := func(p int, err error) {
		once.Do(func() {
			peer = p
			r.fail(classify(ctx, err))
		})
	}
	bf16 := e == elemF32 && r.cfg.Wire == BFloat16
	go func() {
		err := r.sendLoop(ctx, tag, data, e, bf16, &recvDone, notify, abort)
		if err != nil {
			first(r.right(), err)
		}
		sendErr <- err
	}()
	rerr := r.recvLoop(ctx, tag, data, e, bf16, &recvDone, notify)
	if rerr != nil {
		first(r.left(), rerr)
		close(abort)
	}
	serr := <-sendErr
	if rerr != nil {
		return peer, rerr
	}
	return peer, serr
}

func (r *Ring) sendLoop(ctx context.Context, tag uint64, data []byte, e elem, bf16 bool,
	recvDone *atomic.Int64, notify, abort chan struct{}) error {
	es := e.size()
	for _, m := range r.sends {
		for int64(m.Dep) >= recvDone.Load() {
			select {
			case <-notify:
			case <-abort:
				return errors.New("receiver failed")
			}
		}
		p := data[m.Lo*es : m.Hi*es]
		if bf16 {
			need := 2 * (m.Hi - m.Lo)
			if cap(r.sWire) < need {
				r.sWire = make([]byte, need)
			}
			p = encodeBF16(r.sWire[:need], bytesF32(p))
		}
		t := tag
		if r.comp != nil && len(p) >= 64 {
			r.sComp = r.comp.compress(r.sComp[:0], p)
			if len(r.sComp) < len(p)-len(p)/8 {
				p = r.sComp
				t |= flagCompressed
			}
		}
		if err := r.t.Send(ctx, t, p); err != nil {
			return err
		}
	}
	return nil
}

func (r *Ring) recvLoop(ctx context.Context, tag uint64, data []byte, e elem, bf16 bool,
	recvDone *atomic.Int64, notify chan struct{}) error {
	es := e.size()
	wes := es // bytes per element on the wire
	if bf16 {
		wes = 2
	}
	for i, m := range r.recvs {
		dst := data[m.Lo*es : m.Hi*es]
		want := (m.Hi - m.Lo) * wes
		direct := !m.Reduce && !bf16 && r.comp == nil
		buf := dst
		if !direct {
			need := want
			if r.comp != nil {
				need = max(need, r.comp.maxLen(want))
			}
			need = max(need, 8)
			if cap(r.rWire) < need {
				r.rWire = make([]byte, need)
			}
			buf = r.rWire[:need]
		}
		got, n, err := r.t.Recv(ctx, buf)
		if err != nil {
			return err
		}
		if got&^0xffff != tag&^0xffff {
			return fmt.Errorf("%w: message %d: got %s #%d, want %s #%d", ErrMismatch, i,
				opName(got), got>>32, opName(tag), tag>>32)
		}
		payload := buf[:n]
		if got&flagCompressed != 0 {
			if r.comp == nil {
				return fmt.Errorf("%w: compressed message but compression is off here", ErrMismatch)
			}
			if cap(r.rComp) < want {
				r.rComp = make([]byte, max(want, 8))
			}
			payload, err = r.comp.decompress(r.rComp[:want], payload, want)
			if err != nil {
				return err
			}
		} else if n != want {
			return fmt.Errorf("%w: message %d of %s has %d bytes, want %d (sizes differ between ranks)",
				ErrMismatch, i, opName(tag), n, want)
		}
		switch {
		case direct:
		case m.Reduce && bf16:
			addBF16(bytesF32(dst), bytesU16(payload))
		case m.Reduce && e == elemF32:
			addF32(bytesF32(dst), bytesF32(payload))
		case m.Reduce && e == elemF64:
			addF64(bytesF64(dst), bytesF64(payload))
		case bf16:
			decodeBF16(bytesF32(dst), bytesU16(payload))
		default:
			copy(dst, payload)
		}
		if m.Round && bf16 {
			roundBF16(bytesF32(dst))
		}
		recvDone.Add(1)
		select {
		case notify <- struct{}{}:
		default:
		}
	}
	return nil
}

func opName(tag uint64) string {
	op := int(tag>>16) & 0xffff
	if op < len(opNames) {
		return opNames[op]
	}
	return fmt.Sprintf("op%d", op)
}

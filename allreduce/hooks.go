package allreduce

import (
	"context"
	"fmt"
)

// The hooks below let a transport outside this package (the plain TCP
// event loop of allreduce/tcp, the in-place sum of allreduce/shm, the
// links of allreduce/dataplane) take over parts of a collective while the
// ring keeps the algorithm: the message plan, the wire formats, the
// deadlines and the errors.

// Passer is a Transport that can run a whole pass itself (the TCP event
// loop, which sends, receives and adds in one goroutine). Pass reports
// handled=false, having done nothing, when it cannot run this pass (its
// links are not the kind it drives); the ring then runs the pass over Send
// and Recv. A transport that runs a pass must move exactly the messages of
// p, in order, with the bytes Payload gives and the effect of Consume and
// Finish on what it receives, and return the peer to blame with an error.
type Passer interface {
	Pass(ctx context.Context, p *Pass) (peer int, handled bool, err error)
}

// GracefulCloser is a Transport that can close without losing what it has
// sent: a ring closed while idle calls CloseGracefully instead of Close,
// so that its right neighbour still reads everything sent before.
type GracefulCloser interface {
	CloseGracefully()
}

// DataPlaner is a Transport that names how it moves the data (DataPlane).
type DataPlaner interface {
	DataPlane() string
}

// InPlaceSum sums all-reduces of slices of a vector that every rank can read
// in its peers' memory (allreduce/shm). A transport sets it on a ring with
// SetInPlace before the ring's first collective.
type InPlaceSum interface {
	// Offset reports where buf lies in the vector, if it does.
	Offset(buf []float32) (off int, ok bool)
	// AllReduce sums elements [off, off+n) of the vector over all ranks in
	// place, as collective number seq of the ring; it returns the rank it
	// was waiting for when it failed.
	AllReduce(ctx context.Context, rank int, seq uint32, off, n int) (peer int, err error)
	// Stop ends every wait of a sum in progress (the ring failed).
	Stop()
	// Close releases the vector for the next ring; no sum runs.
	Close()
}

// Vector is the memory a rank shares with its peers for in-place
// all-reduces (Config.Shared): an *shm.SharedVector.
type Vector interface {
	Len() int
	Floats() []float32
}

// Pass is the plan of one collective's messages as a Passer sees it: the
// messages to send and to receive, in order, over the buffer Data (the
// collective's elements as bytes).
type Pass struct {
	r *Ring
	e elem

	Tag          uint64 // the collective's tag, carried by every message
	Data         []byte
	Sends, Recvs []Msg
	BF16         bool // float32 elements travel as bfloat16
	ElemBytes    int  // bytes per element in Data
	WireBytes    int  // bytes per element on the wire
	// OnWait is Config.OnWait: a Passer calls it where it would sleep.
	OnWait func() bool
}

func (p *Pass) init() {
	p.BF16 = p.e == elemF32 && p.r.cfg.Wire == BFloat16
	p.ElemBytes = p.e.size()
	p.WireBytes = p.ElemBytes
	if p.BF16 {
		p.WireBytes = 2
	}
	p.OnWait = p.r.cfg.OnWait
}

// Left is the rank messages come from, Right the one they go to.
func (p *Pass) Left() int  { return p.r.left() }
func (p *Pass) Right() int { return p.r.right() }

// WireLen is the number of bytes message m has on the wire.
func (p *Pass) WireLen(m Msg) int { return (m.Hi - m.Lo) * p.WireBytes }

// Direct reports whether received message m is stored as it comes,
// straight into Data, rather than added or decoded through Consume.
func (p *Pass) Direct(m Msg) bool { return !m.Reduce && !p.BF16 }

// Payload returns the bytes to send for message m: a slice of Data, or its
// bfloat16 encoding in the ring's scratch space (valid until the next call).
func (p *Pass) Payload(m Msg) []byte {
	b := p.Data[m.Lo*p.ElemBytes : m.Hi*p.ElemBytes]
	if p.BF16 {
		r := p.r
		need := 2 * (m.Hi - m.Lo)
		if cap(r.sWire) < need {
			r.sWire = make([]byte, need)
		}
		b = encodeBF16(r.sWire[:need], bytesF32(b))
	}
	return b
}

// Scratch returns the ring's receive scratch space of n bytes, for the
// received bytes of messages that are not Direct.
func (p *Pass) Scratch(n int) []byte {
	r := p.r
	if cap(r.rWire) < n {
		r.rWire = make([]byte, n)
	}
	return r.rWire[:n]
}

// Consume applies received wire bytes w (whole elements) of message m to
// Data from element m.Lo+first on: dst[i] += w[i] for a reduce, dst[i] =
// widen(w[i]) or a copy otherwise.
func (p *Pass) Consume(m Msg, first int, w []byte) {
	lo := m.Lo + first
	n := len(w) / p.WireBytes
	d := p.Data[lo*p.ElemBytes : (lo+n)*p.ElemBytes]
	switch {
	case m.Reduce && p.BF16:
		addBF16(bytesF32(d), bytesU16(w))
	case m.Reduce && p.e == elemF32:
		addF32(bytesF32(d), bytesF32(w))
	case m.Reduce && p.e == elemF64:
		addF64(bytesF64(d), bytesF64(w))
	case p.BF16:
		decodeBF16(bytesF32(d), bytesU16(w))
	default:
		copy(d, w)
	}
}

// Finish completes received message m once all of it is in: the owner of
// a segment rounds its sum to the wire precision.
func (p *Pass) Finish(m Msg) {
	if m.Round && p.BF16 {
		roundBF16(bytesF32(p.Data[m.Lo*p.ElemBytes : m.Hi*p.ElemBytes]))
	}
}

// CheckHeader checks the tag and length n of received message i against
// the plan: an error wrapping ErrMismatch when the ranks disagree.
func (p *Pass) CheckHeader(i int, tag uint64, n int) error {
	if tag&^0xffff != p.Tag&^0xffff {
		return fmt.Errorf("%w: message %d: got %s #%d, want %s #%d", ErrMismatch, i,
			opName(tag), tag>>32, opName(p.Tag), p.Tag>>32)
	}
	if tag&flagCompressed != 0 {
		return fmt.Errorf("%w: compressed message but compression is off here", ErrMismatch)
	}
	if want := p.WireLen(p.Recvs[i]); n != want {
		return fmt.Errorf("%w: message %d of %s has %d bytes, want %d (sizes differ between ranks)",
			ErrMismatch, i, opName(p.Tag), n, want)
	}
	return nil
}

// Transport returns the transport the ring runs on (nil for one rank).
func (r *Ring) Transport() Transport { return r.t }

// SetInPlace makes d sum this ring's all-reduces of slices of its vector.
// It must be called before the ring's first collective.
func (r *Ring) SetInPlace(d InPlaceSum) { r.inPlace = d }

// OnClose registers f to run once Close has closed the ring (a Server
// forgets the ring). It must be called before the ring is shared.
func (r *Ring) OnClose(f func()) {
	r.mu.Lock()
	r.release = f
	r.mu.Unlock()
}

// Abort breaks the ring with reason (which should wrap a sentinel error):
// its links close and every collective in progress or to come fails.
func (r *Ring) Abort(reason error) { r.fail(reason) }

// DataPlane names how this ring's data move: "shm+in-place" when it sums
// its shared vector in place, "local" for a ring of one rank, otherwise
// what its transport says ("shm" when both links of this rank go through
// shared memory, "tcp", "grpc", "mem" for in-memory rings), or "custom".
func (r *Ring) DataPlane() string {
	switch {
	case r.inPlace != nil:
		return "shm+in-place"
	case r.size == 1:
		return "local"
	}
	if d, ok := r.t.(DataPlaner); ok {
		return d.DataPlane()
	}
	return "custom"
}

// InPlace reports whether this ring sums all-reduces of slices of
// Config.Shared in place (every rank on this machine, linked through shared
// memory, with a vector of the same length).
func (r *Ring) InPlace() bool { return r.inPlace != nil }

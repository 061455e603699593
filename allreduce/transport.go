package allreduce

import (
	"context"
	"fmt"
	"sync"
)

// Transport carries the messages of one ring generation for one rank: it
// sends to the right neighbour (rank+1) and receives from the left one
// (rank-1). Messages arrive whole and in order. A Transport is used by at
// most one sending and one receiving goroutine at a time.
//
// Once Send or Recv has failed the transport is broken; the ring closes it.
// Close unblocks any Send or Recv in progress. Implementations may check ctx
// only when a call starts: the ring closes the transport to interrupt a
// call whose context ends.
type Transport interface {
	// Send transmits p as one message labelled tag. The transport does not
	// keep p after Send returns.
	Send(ctx context.Context, tag uint64, p []byte) error
	// Recv receives the next message into dst and returns its tag and
	// length. A message longer than dst is an error.
	Recv(ctx context.Context, dst []byte) (tag uint64, n int, err error)
	// Close releases both links.
	Close() error
}

// memPipe is one directed in-memory link.
type memPipe struct {
	ch   chan memMsg
	done chan struct{}
	once sync.Once
}

type memMsg struct {
	tag  uint64
	data []byte
}

func newMemPipe() *memPipe {
	return &memPipe{ch: make(chan memMsg, 64), done: make(chan struct{})}
}

func (p *memPipe) close() { p.once.Do(func() { close(p.done) }) }

// memTransport joins two pipes: out to the right neighbour, in from the left.
type memTransport struct {
	out, in *memPipe
}

func (t *memTransport) Send(ctx context.Context, tag uint64, p []byte) error {
	select {
	case <-t.out.done:
		return fmt.Errorf("%w: in-memory link closed", ErrPeerLost)
	default:
	}
	m := memMsg{tag: tag, data: append([]byte(nil), p...)}
	select {
	case t.out.ch <- m:
		return nil
	case <-t.out.done:
		return fmt.Errorf("%w: in-memory link closed", ErrPeerLost)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *memTransport) Recv(ctx context.Context, dst []byte) (uint64, int, error) {
	var m memMsg
	select {
	case m = <-t.in.ch: // messages already sent are delivered before a close
	default:
		select {
		case m = <-t.in.ch:
		case <-t.in.done:
			select {
			case m = <-t.in.ch:
			default:
				return 0, 0, fmt.Errorf("%w: in-memory link closed", ErrPeerLost)
			}
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
	}
	if len(m.data) > len(dst) {
		return m.tag, 0, fmt.Errorf("%w: message of %d bytes, expected at most %d", ErrMismatch, len(m.data), len(dst))
	}
	return m.tag, copy(dst, m.data), nil
}

// DataPlane names the in-memory transport.
func (t *memTransport) DataPlane() string { return "mem" }

func (t *memTransport) Close() error {
	t.out.close()
	t.in.close()
	return nil
}

// NewMemRings connects k rings in memory, for tests: ring i has rank i and
// the fields of cfg otherwise (Peers is filled with "mem:i" names).
func NewMemRings(k int, cfg Config) ([]*Ring, error) {
	if k <= 0 {
		return nil, fmt.Errorf("allreduce: %d in-memory ranks", k)
	}
	pipes := make([]*memPipe, k) // pipes[i]: rank i -> rank i+1
	for i := range pipes {
		pipes[i] = newMemPipe()
	}
	peers := make([]string, k)
	for i := range peers {
		peers[i] = fmt.Sprintf("mem:%d", i)
	}
	rings := make([]*Ring, k)
	for i := range rings {
		c := cfg
		c.Rank, c.Peers = i, peers
		var t Transport
		if k > 1 {
			t = &memTransport{out: pipes[i], in: pipes[(i+k-1)%k]}
		}
		r, err := NewRingWithTransport(c, t)
		if err != nil {
			for _, r := range rings[:i] {
				r.Close()
			}
			return nil, err
		}
		rings[i] = r
	}
	return rings, nil
}

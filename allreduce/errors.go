package allreduce

import (
	"errors"
	"fmt"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrPeerLost: a neighbour's link broke (the process died, closed the
	// ring, or its own collective failed and it tore the ring down).
	ErrPeerLost = errors.New("peer lost")
	// ErrDeadline: the operation's deadline passed while waiting on a peer
	// (a stalled peer). Errors wrapping it also match context.DeadlineExceeded.
	ErrDeadline = errors.New("deadline exceeded")
	// ErrGeneration: the ring or the peer belongs to another generation.
	ErrGeneration = errors.New("generation mismatch")
	// ErrHandshake: a peer was refused (protocol version, job id, rank or
	// ring size differ) or spoke garbage.
	ErrHandshake = errors.New("handshake refused")
	// ErrMismatch: the ranks disagree about the operation (kind, order or
	// sizes), detected from the message tags and lengths.
	ErrMismatch = errors.New("operation mismatch between ranks")
	// ErrClosed: the ring was closed locally.
	ErrClosed = errors.New("ring closed")
	// ErrCanceled: the caller's context was canceled.
	ErrCanceled = errors.New("canceled")
	// ErrUnauthenticated: a peer was refused before any handshake because
	// it lacks the run's token or a certificate the other side accepts.
	ErrUnauthenticated = errors.New("data plane authentication failed")
)

// PeerError reports a failed collective: which operation, on which rank and
// generation, waiting on which peer. Err wraps one of the sentinel errors.
type PeerError struct {
	Op         string // "allreduce", "allgather", "reducescatter", "broadcast", "barrier", "connect"
	Peer       string // the peer's data-plane address
	Rank       int    // the peer's rank
	Local      int    // this rank
	Generation uint64
	Err        error
}

func (e *PeerError) Error() string {
	return fmt.Sprintf("allreduce: %s (generation %d, rank %d): peer rank %d at %s: %v",
		e.Op, e.Generation, e.Local, e.Rank, e.Peer, e.Err)
}

func (e *PeerError) Unwrap() error { return e.Err }

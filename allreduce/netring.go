package allreduce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// outLink is the sending half of a network link.
type outLink interface {
	send(tag uint64, p []byte) error
	close(graceful bool)
}

// inLink is the receiving half of a network link.
type inLink interface {
	recv(ctx context.Context, dst []byte) (tag uint64, n int, err error)
	close()
}

// netTransport joins the link to the right neighbour and the link from the
// left one.
type netTransport struct {
	out    outLink
	in     inLink
	once   sync.Once
	closed atomic.Bool // set before the links close
}

func (t *netTransport) isClosed() bool { return t.closed.Load() }

func (t *netTransport) Send(ctx context.Context, tag uint64, p []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return t.out.send(tag, p)
}

func (t *netTransport) Recv(ctx context.Context, dst []byte) (uint64, int, error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	return t.in.recv(ctx, dst)
}

// Close tears both links down at once (a failure).
func (t *netTransport) Close() error {
	t.once.Do(func() {
		t.closed.Store(true)
		t.in.close()
		t.out.close(false)
	})
	return nil
}

// closeGracefully lets the right neighbour read what was sent before the
// link goes away (a normal Close).
func (t *netTransport) closeGracefully() {
	t.once.Do(func() {
		t.closed.Store(true)
		t.in.close()
		t.out.close(true)
	})
}

// NewRing connects this worker to its ring neighbours for cfg.Generation
// over srv: it dials the right neighbour (Peers[Rank+1]) and waits for the
// left one to dial in, both within ctx (or cfg.Timeout when ctx has no
// deadline). Building a ring breaks the rings of older generations of the
// same job on srv.
func NewRing(ctx context.Context, srv *Server, cfg Config) (*Ring, error) {
	c, err := cfg.withDefaults(len(cfg.Peers))
	if err != nil {
		return nil, err
	}
	if srv == nil {
		return nil, errors.New("allreduce: NewRing without a server")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	sl, err := srv.register(c)
	if err != nil {
		return nil, err
	}
	k := len(c.Peers)
	if k == 1 {
		r, err := NewRingWithTransport(c, nil)
		if err != nil {
			srv.unregister(sl)
			return nil, err
		}
		r.release = func() { srv.unregister(sl) }
		if !srv.attach(sl, r) {
			r.Close()
			return nil, fmt.Errorf("allreduce: %w: superseded while connecting", ErrGeneration)
		}
		return r, nil
	}
	right, left := (c.Rank+1)%k, (c.Rank+k-1)%k
	hello := handshake{Version: ProtocolVersion, Kind: helloKind, Generation: c.Generation,
		From: uint32(c.Rank), To: uint32(right), Size: uint32(k), JobID: c.JobID}

	type dialed struct {
		out outLink
		err error
	}
	dc := make(chan dialed, 1)
	go func() {
		var d dialed
		switch c.Transport {
		case TransportTCP, TransportSHM:
			var o *tcpOut
			if o, d.err = dialTCP(ctx, c.Peers[right], hello, c.dialConn); d.err == nil {
				d.out = o
			}
		default:
			var o *grpcOut
			if o, d.err = dialSecureGRPC(ctx, c, c.Peers[right], hello); d.err == nil {
				d.out = o
			}
		}
		dc <- d
	}()
	connectErr := func(peer int, err error) error {
		return &PeerError{Op: "connect", Peer: c.Peers[peer], Rank: peer, Local: c.Rank, Generation: c.Generation, Err: err}
	}
	// Wait for both links; the first failure ends the wait.
	var (
		in    inLink
		inErr error
		d     dialed
		gotD  bool
	)
	for in == nil && inErr == nil && (!gotD || d.err == nil) {
		select {
		case ib := <-sl.in:
			in = ib.link
		case d = <-dc:
			gotD = true
		case <-ctx.Done():
			inErr = fmt.Errorf("%w: rank %d did not connect: %w", ErrDeadline, left, ctx.Err())
		}
	}
	if in != nil && !gotD {
		d, gotD = <-dc, true
	}
	if inErr != nil || d.err != nil {
		if in != nil {
			in.close()
		}
		if !gotD {
			d = <-dc // the dial gives up with ctx
		}
		if d.out != nil {
			d.out.close(false)
		}
		srv.unregister(sl)
		if d.err != nil {
			return nil, connectErr(right, d.err)
		}
		return nil, connectErr(left, inErr)
	}
	nt := &netTransport{out: d.out, in: in}
	r, err := NewRingWithTransport(c, nt)
	if err != nil {
		in.close()
		d.out.close(false)
		srv.unregister(sl)
		return nil, err
	}
	if c.Transport == TransportTCP || c.Transport == TransportSHM {
		if err := upgradeShm(ctx, r, nt, c.Transport == TransportSHM); err != nil {
			r.Close()
			srv.unregister(sl)
			return nil, connectErr(right, err)
		}
		if err := setupDirect(ctx, r, nt); err != nil {
			r.Close()
			srv.unregister(sl)
			return nil, connectErr(right, err)
		}
	}
	r.release = func() { srv.unregister(sl) }
	if !srv.attach(sl, r) {
		r.Close()
		return nil, connectErr(left, fmt.Errorf("%w: superseded while connecting", ErrGeneration))
	}
	c.Logger.Debug("allreduce: ring connected", "job", c.JobID, "generation", c.Generation, "rank", c.Rank, "size", k, "transport", c.Transport)
	return r, nil
}

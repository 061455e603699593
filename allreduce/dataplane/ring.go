package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/grpc"
	"github.com/infonce/infonce/allreduce/internal/link"
	"github.com/infonce/infonce/allreduce/shm"
	"github.com/infonce/infonce/allreduce/tcp"
)

// outLink is the sending half of a network link (tcp.Out, grpc.Out,
// shm.Out).
type outLink interface {
	Send(tag uint64, p []byte) error
	Close(graceful bool)
}

// pair is the transport of a network ring: the link to the right
// neighbour and the link from the left one. The links a TCP ring starts
// with may each move to shared memory (shm.Upgrade) before the ring runs
// its first collective of the caller.
type pair struct {
	out       outLink
	in        link.InLink
	transport string // Config.Transport
	once      sync.Once
	closed    atomic.Bool // set before the links close
}

func (t *pair) Send(ctx context.Context, tag uint64, p []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return t.out.Send(tag, p)
}

func (t *pair) Recv(ctx context.Context, dst []byte) (uint64, int, error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	return t.in.Recv(ctx, dst)
}

// Pass runs the pass as the TCP event loop when both links are plain TCP
// (allreduce.Passer).
func (t *pair) Pass(ctx context.Context, p *allreduce.Pass) (peer int, handled bool, err error) {
	out, ok1 := t.out.(*tcp.Out)
	in, ok2 := t.in.(*tcp.In)
	if !ok1 || !ok2 || !tcp.Runs(out, in) {
		return 0, false, nil
	}
	peer, err = tcp.RunPass(ctx, out, in, &t.closed, p)
	return peer, true, err
}

// linksShared reports whether both links moved to shared memory.
func (t *pair) linksShared() bool {
	_, out := t.out.(*shm.Out)
	_, in := t.in.(*shm.In)
	return out && in
}

// DataPlane is "shm" when both links of this rank go through shared
// memory, otherwise the network transport ("tcp", "grpc").
func (t *pair) DataPlane() string {
	if t.linksShared() {
		return allreduce.TransportSHM
	}
	if t.transport == allreduce.TransportSHM {
		return allreduce.TransportTCP
	}
	return t.transport
}

// Close tears both links down at once (a failure).
func (t *pair) Close() error {
	t.once.Do(func() {
		t.closed.Store(true)
		t.in.Close()
		t.out.Close(false)
	})
	return nil
}

// CloseGracefully lets the right neighbour read what was sent before the
// link goes away (a normal Close).
func (t *pair) CloseGracefully() {
	t.once.Do(func() {
		t.closed.Store(true)
		t.in.Close()
		t.out.Close(true)
	})
}

// testRefuseShm, set by tests, makes the ranks for which it returns true
// not open their left neighbour's shared-memory segment, as a process of
// another user could not.
var testRefuseShm func(rank int) bool

// NewRing connects this worker to its ring neighbours for cfg.Generation
// over srv: it dials the right neighbour (Peers[Rank+1]) and waits for the
// left one to dial in, both within ctx (or cfg.Timeout when ctx has no
// deadline). Building a ring breaks the rings of older generations of the
// same job on srv.
func NewRing(ctx context.Context, srv *Server, cfg allreduce.Config) (*allreduce.Ring, error) {
	c, err := cfg.WithDefaults(len(cfg.Peers))
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
		r, err := allreduce.NewRingWithTransport(c, nil)
		if err != nil {
			srv.unregister(sl)
			return nil, err
		}
		r.OnClose(func() { srv.unregister(sl) })
		if !srv.attach(sl, r) {
			r.Close()
			return nil, fmt.Errorf("allreduce: %w: superseded while connecting", allreduce.ErrGeneration)
		}
		return r, nil
	}
	right, left := (c.Rank+1)%k, (c.Rank+k-1)%k
	hello := link.Handshake{Version: link.ProtocolVersion, Kind: link.HelloKind, Generation: c.Generation,
		From: uint32(c.Rank), To: uint32(right), Size: uint32(k), JobID: c.JobID}

	type dialed struct {
		out outLink
		err error
	}
	dc := make(chan dialed, 1)
	go func() {
		var d dialed
		connect := func(ctx context.Context, addr string) (net.Conn, error) { return dialConn(ctx, c, addr) }
		switch c.Transport {
		case allreduce.TransportTCP, allreduce.TransportSHM:
			var o *tcp.Out
			if o, d.err = tcp.Dial(ctx, c.Peers[right], hello, connect); d.err == nil {
				d.out = o
			}
		default:
			if c.TLS == nil && c.Token == "" {
				connect = nil
			}
			var o *grpc.Out
			if o, d.err = grpc.Dial(ctx, c.Peers[right], hello, connect); d.err == nil {
				d.out = o
			}
		}
		dc <- d
	}()
	connectErr := func(peer int, err error) error {
		return &allreduce.PeerError{Op: "connect", Peer: c.Peers[peer], Rank: peer, Local: c.Rank, Generation: c.Generation, Err: err}
	}
	// Wait for both links; the first failure ends the wait.
	var (
		in    link.InLink
		inErr error
		d     dialed
		gotD  bool
	)
	for in == nil && inErr == nil && (!gotD || d.err == nil) {
		select {
		case ib := <-sl.in:
			in = ib.Link
		case d = <-dc:
			gotD = true
		case <-ctx.Done():
			inErr = fmt.Errorf("%w: rank %d did not connect: %w", allreduce.ErrDeadline, left, ctx.Err())
		}
	}
	if in != nil && !gotD {
		d, gotD = <-dc, true
	}
	if inErr != nil || d.err != nil {
		if in != nil {
			in.Close()
		}
		if !gotD {
			d = <-dc // the dial gives up with ctx
		}
		if d.out != nil {
			d.out.Close(false)
		}
		srv.unregister(sl)
		if d.err != nil {
			return nil, connectErr(right, d.err)
		}
		return nil, connectErr(left, inErr)
	}
	nt := &pair{out: d.out, in: in, transport: c.Transport}
	r, err := allreduce.NewRingWithTransport(c, nt)
	if err != nil {
		in.Close()
		d.out.Close(false)
		srv.unregister(sl)
		return nil, err
	}
	if c.Transport == allreduce.TransportTCP || c.Transport == allreduce.TransportSHM {
		var outConn, inConn net.Conn // nil unless plain TCP
		if o, ok := nt.out.(*tcp.Out); ok {
			outConn = o.Conn()
		}
		if i, ok := nt.in.(*tcp.In); ok {
			inConn = i.Conn()
		}
		enabled := c.Transport == allreduce.TransportSHM
		open := enabled && (testRefuseShm == nil || !testRefuseShm(c.Rank))
		sout, sin, err := shm.Upgrade(ctx, r, outConn, inConn, enabled, open)
		if err != nil {
			r.Close()
			srv.unregister(sl)
			return nil, connectErr(right, err)
		}
		if sout != nil {
			nt.out = sout
		}
		if sin != nil {
			nt.in = sin
		}
		if err := shm.SetupDirect(ctx, r, sout, sin); err != nil {
			r.Close()
			srv.unregister(sl)
			return nil, connectErr(right, err)
		}
	}
	r.OnClose(func() { srv.unregister(sl) })
	if !srv.attach(sl, r) {
		r.Close()
		return nil, connectErr(left, fmt.Errorf("%w: superseded while connecting", allreduce.ErrGeneration))
	}
	c.Logger.Debug("allreduce: ring connected", "job", c.JobID, "generation", c.Generation, "rank", c.Rank, "size", k, "transport", c.Transport)
	return r, nil
}

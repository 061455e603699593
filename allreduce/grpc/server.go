package grpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/allreducepb"
	"github.com/infonce/infonce/allreduce/internal/link"
)

// Server serves the Link streams of left neighbours on connections that a
// shared listener accepted and handed over (Deliver), and offers each link
// to the data-plane Server for admission.
type Server struct {
	ln     *chanListener
	gs     *grpc.Server
	logger *slog.Logger
	offer  link.Offer
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  map[string]net.Conn // HTTP/2 connections by remote address
}

// MaxStreams bounds the concurrent streams of one connection.
const MaxStreams = 4

// NewServer starts serving the connections given to Deliver; addr is the
// shared listener's address.
func NewServer(addr net.Addr, logger *slog.Logger, offer link.Offer) *Server {
	s := &Server{ln: newChanListener(addr), logger: logger, offer: offer, conns: map[string]net.Conn{}}
	s.gs = grpc.NewServer(
		grpc.MaxRecvMsgSize(grpcMaxMsg),
		grpc.MaxSendMsgSize(grpcMaxMsg),
		grpc.InitialWindowSize(grpcWindow),
		grpc.InitialConnWindowSize(grpcWindow),
		grpc.ReadBufferSize(grpcIOBuffer),
		grpc.WriteBufferSize(grpcIOBuffer),
		experimental.BufferPool(dataPool),
		// A ring needs one Link stream per neighbour: a connection that
		// opens more is not a peer. A connection must finish its HTTP/2
		// handshake within ConnectionTimeout, and idle ones are pinged.
		grpc.MaxConcurrentStreams(MaxStreams),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 15 * time.Second, Timeout: 10 * time.Second}),
	)
	allreducepb.RegisterRingServer(s.gs, &ringService{s: s})
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.gs.Serve(s.ln) }()
	return s
}

// Deliver serves c, whose first four bytes head were already read.
func (s *Server) Deliver(c net.Conn, head [4]byte) {
	pc := &prefixConn{Conn: c, prefix: head[:], forget: s.forgetConn}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.conns[c.RemoteAddr().String()] = c
	s.mu.Unlock()
	if !s.ln.deliver(pc) {
		pc.Close()
	}
}

// Close stops serving and ends every stream.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.ln.Close()
	s.gs.Stop()
	s.wg.Wait()
}

func (s *Server) forgetConn(c net.Conn) {
	s.mu.Lock()
	if s.conns[c.RemoteAddr().String()] == c {
		delete(s.conns, c.RemoteAddr().String())
	}
	s.mu.Unlock()
}

// ringService serves the gRPC Link stream.
type ringService struct {
	allreducepb.UnimplementedRingServer
	s *Server
}

func (rs *ringService) Link(stream allreducepb.Ring_LinkServer) error {
	s := rs.s
	var first inMsg
	if err := stream.RecvMsg(&first); err != nil {
		return err
	}
	var hb []byte
	if first.data.Len() <= maxHelloBytes {
		hb = first.data.Materialize()
	}
	first.data.Free()
	hello, err := link.DecodeHandshake(hb)
	reply := func(r link.Refusal) error {
		if r.Code != link.CodeNone {
			s.logger.Warn("allreduce: refused a link", "job", hello.JobID, "generation", hello.Generation, "from", hello.From, "reason", r.Reason)
		}
		h := link.Reply(hello, r)
		return stream.SendMsg(&outMsg{data: h.Encode()})
	}
	if err != nil {
		return reply(link.Refusal{Code: link.CodeMalformed, Reason: err.Error()})
	}
	var conn net.Conn
	if p, ok := peer.FromContext(stream.Context()); ok && p.Addr != nil {
		s.mu.Lock()
		conn = s.conns[p.Addr.String()]
		s.mu.Unlock()
	}
	quit := make(chan struct{})
	g := &In{msgs: make(chan inMsg, 4), ended: make(chan struct{})}
	g.release = func() {
		close(quit)
		if conn != nil {
			conn.Close()
		}
	}
	in := link.NewInbound(hello, g)
	if r := s.offer(stream.Context(), in); r.Code != link.CodeNone {
		return reply(r)
	}
	if err := reply(link.Refusal{}); err != nil {
		g.endErr = fmt.Errorf("%w: %v", allreduce.ErrPeerLost, err)
		close(g.ended)
		return err
	}
	g.serveLink(stream, quit)
	return nil
}

// Dial opens the link to the right neighbour at addr and completes the
// handshake hello; it gives up when ctx ends. With connect set, every
// connection goes through it (TLS and the token exchange), and a refusal
// of the token or certificate (an error wrapping
// allreduce.ErrUnauthenticated) ends the dial at once with that error,
// instead of gRPC retrying until ctx ends.
func Dial(ctx context.Context, addr string, hello link.Handshake, connect func(context.Context, string) (net.Conn, error)) (*Out, error) {
	if connect == nil {
		return dial(ctx, addr, hello)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var refused error
	dialer := grpc.WithContextDialer(func(dctx context.Context, a string) (net.Conn, error) {
		conn, err := connect(dctx, a)
		if errors.Is(err, allreduce.ErrUnauthenticated) {
			mu.Lock()
			refused = err
			mu.Unlock()
			cancel()
		}
		return conn, err
	})
	out, err := dial(ctx, addr, hello, dialer)
	mu.Lock()
	defer mu.Unlock()
	if err != nil && refused != nil {
		return nil, refused
	}
	return out, err
}

// chanListener hands connections accepted elsewhere to grpc.Server.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// prefixConn replays the sniffed bytes before reading from the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
	closed sync.Once
	forget func(net.Conn)
}

func (p *prefixConn) Close() error {
	p.closed.Do(func() { p.forget(p.Conn) })
	return p.Conn.Close()
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

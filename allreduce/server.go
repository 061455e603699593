package allreduce

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/peer"

	"github.com/infonce/infonce/allreduce/allreducepb"
)

// Server is a worker's data-plane listener. It lives as long as the worker;
// every generation builds a new Ring over it with NewRing, and links of an
// older generation are refused and closed. One TCP port serves both data
// planes: connections starting with the HTTP/2 preface go to gRPC, those
// starting with "IRNG" to the plain TCP transport.
type Server struct {
	ln          net.Listener
	grpcLn      *chanListener
	gs          *grpc.Server
	logger      *slog.Logger
	parkTimeout time.Duration
	sec         serverSecurity // token and TLS (secure.go)

	mu      sync.Mutex
	closed  bool
	slots   map[string]*slot  // job id -> the ring being built or in use
	lastGen map[string]uint64 // job id -> newest generation registered
	parked  map[*inbound]struct{}
	conns   map[string]net.Conn // HTTP/2 connections by remote address
	wg      sync.WaitGroup
}

// ServerOption configures Listen.
type ServerOption func(*Server)

// WithLogger sets the server's logger.
func WithLogger(l *slog.Logger) ServerOption { return func(s *Server) { s.logger = l } }

// WithParkTimeout sets how long a link that arrives before its generation
// is registered (the neighbour was faster) waits for NewRing. Default 30s.
func WithParkTimeout(d time.Duration) ServerOption { return func(s *Server) { s.parkTimeout = d } }

// Listen starts a data-plane server on addr (for example "127.0.0.1:0").
func Listen(addr string, opts ...ServerOption) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("allreduce: listen on %s: %w", addr, err)
	}
	s := &Server{
		ln:          ln,
		logger:      slog.New(slog.DiscardHandler),
		parkTimeout: 30 * time.Second,
		slots:       map[string]*slot{},
		lastGen:     map[string]uint64{},
		parked:      map[*inbound]struct{}{},
		conns:       map[string]net.Conn{},
	}
	for _, o := range opts {
		o(s)
	}
	s.grpcLn = newChanListener(ln.Addr())
	s.gs = grpc.NewServer(
		grpc.MaxRecvMsgSize(grpcMaxMsg),
		grpc.MaxSendMsgSize(grpcMaxMsg),
		grpc.InitialWindowSize(grpcWindow),
		grpc.InitialConnWindowSize(grpcWindow),
		grpc.ReadBufferSize(grpcIOBuffer),
		grpc.WriteBufferSize(grpcIOBuffer),
		experimental.BufferPool(dataPool),
	)
	allreducepb.RegisterRingServer(s.gs, &ringService{s: s})
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.gs.Serve(s.grpcLn) }()
	go func() { defer s.wg.Done(); s.acceptLoop() }()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server: the listener, every link and every ring built on
// it (their collectives fail with ErrClosed).
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var rings []*Ring
	for _, sl := range s.slots {
		if sl.ring != nil {
			rings = append(rings, sl.ring)
		}
	}
	for in := range s.parked {
		in.decide(refusal{codeClosed, "the server is shutting down"})
	}
	s.parked = map[*inbound]struct{}{}
	s.mu.Unlock()
	for _, r := range rings {
		r.fail(ErrClosed)
	}
	err := s.ln.Close()
	s.grpcLn.Close()
	s.gs.Stop()
	s.wg.Wait()
	return err
}

func (s *Server) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.sniff(c) }()
	}
}

// sniff routes a new connection by its first four bytes.
func (s *Server) sniff(c net.Conn) {
	c, head, ok := s.admit(c) // TLS, token, first bytes (secure.go)
	if !ok {
		return
	}
	if head == tcpPreface {
		tc, ok := c.(*net.TCPConn)
		if !ok {
			s.logger.Warn("allreduce: refused a plain TCP link over TLS: use the grpc transport", "remote", c.RemoteAddr().String())
			c.Close()
			return
		}
		s.serveTCP(tc)
		return
	}
	pc := &prefixConn{Conn: c, prefix: head[:], forget: s.forgetConn}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.conns[c.RemoteAddr().String()] = c
	s.mu.Unlock()
	if !s.grpcLn.deliver(pc) {
		pc.Close()
	}
}

func (s *Server) forgetConn(c net.Conn) {
	s.mu.Lock()
	if s.conns[c.RemoteAddr().String()] == c {
		delete(s.conns, c.RemoteAddr().String())
	}
	s.mu.Unlock()
}

// slot is the registration of one ring (job, generation, rank) waiting for
// or holding the link from its left neighbour.
type slot struct {
	job       string
	gen       uint64
	rank      int
	left      int
	size      int
	in        chan *inbound
	delivered bool
	ring      *Ring
}

// refusal is the server's decision on an incoming link; code 0 accepts.
type refusal struct {
	code   uint8
	reason string
}

// inbound is an incoming link whose handshake has been read.
type inbound struct {
	hello    handshake
	link     inLink
	decision chan refusal // buffered; receives exactly one decision
	once     sync.Once
}

func (in *inbound) decide(r refusal) { in.once.Do(func() { in.decision <- r }) }

// judge decides whether hello fits sl; it returns a refusal or nil.
func judge(sl *slot, h handshake) *refusal {
	if int(h.To) != sl.rank || int(h.From) != sl.left || int(h.Size) != sl.size {
		return &refusal{codeTopology, fmt.Sprintf("link from rank %d to rank %d of a ring of %d, but this is rank %d of %d expecting rank %d",
			h.From, h.To, h.Size, sl.rank, sl.size, sl.left)}
	}
	if sl.delivered {
		return &refusal{codeTopology, fmt.Sprintf("rank %d already has a link from rank %d in generation %d", sl.rank, sl.left, sl.gen)}
	}
	return nil
}

// offer submits an incoming link. It returns the decision, waiting while
// the link is parked for a generation not yet registered here.
func (s *Server) offer(ctx context.Context, in *inbound) refusal {
	h := in.hello
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return refusal{codeClosed, "the server is shutting down"}
	case h.Kind != helloKind:
		s.mu.Unlock()
		return refusal{codeMalformed, fmt.Sprintf("expected a hello, got handshake kind %d", h.Kind)}
	case h.Version != ProtocolVersion:
		s.mu.Unlock()
		return refusal{codeVersion, fmt.Sprintf("protocol version %d, this server speaks %d", h.Version, ProtocolVersion)}
	}
	if last, ok := s.lastGen[h.JobID]; ok && h.Generation < last {
		s.mu.Unlock()
		return refusal{codeGeneration, fmt.Sprintf("generation %d of job %q is stale: this server is at generation %d", h.Generation, h.JobID, last)}
	}
	if sl := s.slots[h.JobID]; sl != nil && sl.gen == h.Generation {
		if r := judge(sl, h); r != nil {
			s.mu.Unlock()
			return *r
		}
		sl.delivered = true
		sl.in <- in
		s.mu.Unlock()
		return refusal{}
	}
	if len(s.lastGen) > 0 {
		if _, ok := s.lastGen[h.JobID]; !ok {
			var jobs []string
			for j := range s.lastGen {
				jobs = append(jobs, j)
			}
			s.mu.Unlock()
			return refusal{codeJob, fmt.Sprintf("job id %q does not match this server's job %q", h.JobID, jobs)}
		}
	}
	// The generation is newer than any registered: wait for NewRing.
	s.parked[in] = struct{}{}
	s.mu.Unlock()
	t := time.NewTimer(s.parkTimeout)
	defer t.Stop()
	select {
	case r := <-in.decision:
		return r
	case <-t.C:
	case <-ctx.Done():
	}
	s.mu.Lock()
	delete(s.parked, in)
	s.mu.Unlock()
	in.decide(refusal{codeGeneration, fmt.Sprintf("generation %d of job %q was not started here within %v", h.Generation, h.JobID, s.parkTimeout)})
	return <-in.decision
}

// register makes cfg's ring the current one for its job: older rings of the
// job are broken with ErrGeneration and parked links are judged again.
func (s *Server) register(cfg Config) (*slot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("allreduce: %w: server closed", ErrClosed)
	}
	if last, ok := s.lastGen[cfg.JobID]; ok && cfg.Generation < last {
		return nil, fmt.Errorf("allreduce: %w: generation %d is older than generation %d already started on this server",
			ErrGeneration, cfg.Generation, last)
	}
	if old := s.slots[cfg.JobID]; old != nil {
		if old.gen == cfg.Generation && old.ring == nil {
			return nil, fmt.Errorf("allreduce: %w: generation %d is already being connected on this server", ErrGeneration, cfg.Generation)
		}
		if old.ring != nil {
			go old.ring.fail(fmt.Errorf("%w: superseded by generation %d", ErrGeneration, cfg.Generation))
		}
	}
	k := len(cfg.Peers)
	sl := &slot{job: cfg.JobID, gen: cfg.Generation, rank: cfg.Rank, left: (cfg.Rank + k - 1) % k, size: k, in: make(chan *inbound, 1)}
	s.slots[cfg.JobID] = sl
	s.lastGen[cfg.JobID] = cfg.Generation
	for in := range s.parked {
		h := in.hello
		switch {
		case h.JobID != cfg.JobID:
			if _, ok := s.lastGen[h.JobID]; !ok {
				delete(s.parked, in)
				in.decide(refusal{codeJob, fmt.Sprintf("job id %q does not match this server's job %q", h.JobID, cfg.JobID)})
			}
		case h.Generation < cfg.Generation:
			delete(s.parked, in)
			in.decide(refusal{codeGeneration, fmt.Sprintf("generation %d of job %q is stale: this server is at generation %d", h.Generation, h.JobID, cfg.Generation)})
		case h.Generation == cfg.Generation:
			delete(s.parked, in)
			if r := judge(sl, h); r != nil {
				in.decide(*r)
				continue
			}
			sl.delivered = true
			sl.in <- in
			in.decide(refusal{})
		}
	}
	return sl, nil
}

// unregister forgets sl if it is still current.
func (s *Server) unregister(sl *slot) {
	s.mu.Lock()
	if s.slots[sl.job] == sl {
		delete(s.slots, sl.job)
	}
	s.mu.Unlock()
	// a link delivered but never taken by NewRing
	select {
	case in := <-sl.in:
		in.link.close()
	default:
	}
}

func (s *Server) attach(sl *slot, r *Ring) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slots[sl.job] != sl || s.closed {
		return false
	}
	sl.ring = r
	return true
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
	hello, err := decodeHandshake(hb)
	reply := func(r refusal) error {
		h := handshake{Version: ProtocolVersion, Kind: acceptKind, Generation: hello.Generation, From: hello.From, To: hello.To, Size: hello.Size, JobID: hello.JobID}
		if r.code != codeNone {
			h.Kind, h.Code, h.Reason = refuseKind, r.code, r.reason
			s.logger.Warn("allreduce: refused a link", "job", hello.JobID, "generation", hello.Generation, "from", hello.From, "reason", r.reason)
		}
		return stream.SendMsg(&outMsg{data: h.encode()})
	}
	if err != nil {
		return reply(refusal{codeMalformed, err.Error()})
	}
	var conn net.Conn
	if p, ok := peer.FromContext(stream.Context()); ok && p.Addr != nil {
		s.mu.Lock()
		conn = s.conns[p.Addr.String()]
		s.mu.Unlock()
	}
	quit := make(chan struct{})
	g := &grpcIn{msgs: make(chan inMsg, 4), ended: make(chan struct{})}
	g.release = func() {
		close(quit)
		if conn != nil {
			conn.Close()
		}
	}
	in := &inbound{hello: hello, link: g, decision: make(chan refusal, 1)}
	if r := s.offer(stream.Context(), in); r.code != codeNone {
		return reply(r)
	}
	if err := reply(refusal{}); err != nil {
		g.endErr = fmt.Errorf("%w: %v", ErrPeerLost, err)
		close(g.ended)
		return err
	}
	g.serveLink(stream, quit)
	return nil
}

// serveTCP serves a plain TCP link after its preface.
func (s *Server) serveTCP(c *net.TCPConn) {
	tuneTCP(c)
	br := bufio.NewReaderSize(c, tcpReadBuffer)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	fr := frameReader{r: br}
	buf := make([]byte, maxHandshake)
	_, n, err := fr.next(buf, maxHandshake)
	c.SetReadDeadline(time.Time{})
	out := &tcpOut{conn: c}
	hello, herr := decodeHandshake(buf[:n])
	reply := func(r refusal) error {
		h := handshake{Version: ProtocolVersion, Kind: acceptKind, Generation: hello.Generation, From: hello.From, To: hello.To, Size: hello.Size, JobID: hello.JobID}
		if r.code != codeNone {
			h.Kind, h.Code, h.Reason = refuseKind, r.code, r.reason
			s.logger.Warn("allreduce: refused a link", "job", hello.JobID, "generation", hello.Generation, "from", hello.From, "reason", r.reason)
		}
		return out.send(0, h.encode())
	}
	if err != nil {
		c.Close()
		return
	}
	if herr != nil {
		reply(refusal{codeMalformed, herr.Error()})
		c.Close()
		return
	}
	tin := newTCPIn(c, br)
	tin.makeBlocking() // before the ring can see the link
	in := &inbound{hello: hello, link: tin, decision: make(chan refusal, 1)}
	r := s.offer(context.Background(), in)
	if r.code != codeNone {
		reply(r)
		c.Close()
		return
	}
	if err := reply(refusal{}); err != nil {
		in.link.close()
	}
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

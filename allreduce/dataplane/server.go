package dataplane

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/grpc"
	"github.com/infonce/infonce/allreduce/internal/link"
	"github.com/infonce/infonce/allreduce/tcp"
)

// Server is a worker's data-plane listener. It lives as long as the worker;
// every generation builds a new Ring over it with NewRing, and links of an
// older generation are refused and closed. One TCP port serves both data
// planes: connections starting with the HTTP/2 preface go to gRPC, those
// starting with "IRNG" to the plain TCP transport.
type Server struct {
	ln          net.Listener
	grpc        *grpc.Server
	logger      *slog.Logger
	parkTimeout time.Duration
	sec         serverSecurity // token and TLS (secure.go)

	mu      sync.Mutex
	closed  bool
	slots   map[string]*slot  // job id -> the ring being built or in use
	lastGen map[string]uint64 // job id -> newest generation registered
	parked  map[*link.Inbound]struct{}
	wg      sync.WaitGroup

	// admitting holds a token for each connection being admitted (its
	// TLS handshake, token check and first bytes): a connection that
	// arrives when all are taken is closed at once, so that a flood of
	// silent connections costs a bounded number of goroutines.
	admitting chan struct{}
}

// Resource limits of a Server.
const (
	// MaxAdmitting is the number of connections admitted at once.
	MaxAdmitting = 128
	// MaxParked is the number of links that wait for a generation not
	// yet registered here; more are refused.
	MaxParked = 64
	// KeepAlivePeriod is the TCP keepalive of accepted connections, so
	// that a peer that vanished without closing its sockets is noticed
	// by the kernel even when the link is idle.
	KeepAlivePeriod = 15 * time.Second
)

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
		parked:      map[*link.Inbound]struct{}{},
		admitting:   make(chan struct{}, MaxAdmitting),
	}
	for _, o := range opts {
		o(s)
	}
	s.grpc = grpc.NewServer(ln.Addr(), s.logger, s.offer)
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.acceptLoop() }()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server: the listener, every link and every ring built on
// it (their collectives fail with allreduce.ErrClosed).
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var rings []*allreduce.Ring
	for _, sl := range s.slots {
		if sl.ring != nil {
			rings = append(rings, sl.ring)
		}
	}
	for in := range s.parked {
		in.Decide(link.Refusal{Code: link.CodeClosed, Reason: "the server is shutting down"})
	}
	s.parked = map[*link.Inbound]struct{}{}
	s.mu.Unlock()
	for _, r := range rings {
		r.Abort(allreduce.ErrClosed)
	}
	err := s.ln.Close()
	s.grpc.Close()
	s.wg.Wait()
	return err
}

func (s *Server) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetKeepAlive(true)
			tc.SetKeepAlivePeriod(KeepAlivePeriod)
		}
		select {
		case s.admitting <- struct{}{}:
		default:
			c.Close() // MaxAdmitting connections are being admitted
			continue
		}
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.sniff(c) }()
	}
}

// sniff routes a new connection by its first four bytes.
func (s *Server) sniff(c net.Conn) {
	c, head, ok := s.admit(c) // TLS, token, first bytes (secure.go)
	<-s.admitting
	if !ok {
		return
	}
	if head == link.Preface {
		tc, ok := c.(*net.TCPConn)
		if !ok {
			s.logger.Warn("allreduce: refused a plain TCP link over TLS: use the grpc transport", "remote", c.RemoteAddr().String())
			c.Close()
			return
		}
		tcp.Serve(tc, s.logger, s.offer)
		return
	}
	s.grpc.Deliver(c, head)
}

// slot is the registration of one ring (job, generation, rank) waiting for
// or holding the link from its left neighbour.
type slot struct {
	job       string
	gen       uint64
	rank      int
	left      int
	size      int
	in        chan *link.Inbound
	delivered bool
	ring      *allreduce.Ring
}

// judge decides whether hello fits sl; it returns a refusal or nil.
func judge(sl *slot, h link.Handshake) *link.Refusal {
	if int(h.To) != sl.rank || int(h.From) != sl.left || int(h.Size) != sl.size {
		return &link.Refusal{Code: link.CodeTopology, Reason: fmt.Sprintf("link from rank %d to rank %d of a ring of %d, but this is rank %d of %d expecting rank %d",
			h.From, h.To, h.Size, sl.rank, sl.size, sl.left)}
	}
	if sl.delivered {
		return &link.Refusal{Code: link.CodeTopology, Reason: fmt.Sprintf("rank %d already has a link from rank %d in generation %d", sl.rank, sl.left, sl.gen)}
	}
	return nil
}

// offer submits an incoming link. It returns the decision, waiting while
// the link is parked for a generation not yet registered here.
func (s *Server) offer(ctx context.Context, in *link.Inbound) link.Refusal {
	h := in.Hello
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return link.Refusal{Code: link.CodeClosed, Reason: "the server is shutting down"}
	case h.Kind != link.HelloKind:
		s.mu.Unlock()
		return link.Refusal{Code: link.CodeMalformed, Reason: fmt.Sprintf("expected a hello, got handshake kind %d", h.Kind)}
	case h.Version != link.ProtocolVersion:
		s.mu.Unlock()
		return link.Refusal{Code: link.CodeVersion, Reason: fmt.Sprintf("protocol version %d, this server speaks %d", h.Version, link.ProtocolVersion)}
	}
	if last, ok := s.lastGen[h.JobID]; ok && h.Generation < last {
		s.mu.Unlock()
		return link.Refusal{Code: link.CodeGeneration, Reason: fmt.Sprintf("generation %d of job %q is stale: this server is at generation %d", h.Generation, h.JobID, last)}
	}
	if sl := s.slots[h.JobID]; sl != nil && sl.gen == h.Generation {
		if r := judge(sl, h); r != nil {
			s.mu.Unlock()
			return *r
		}
		sl.delivered = true
		sl.in <- in
		s.mu.Unlock()
		return link.Refusal{}
	}
	if len(s.lastGen) > 0 {
		if _, ok := s.lastGen[h.JobID]; !ok {
			var jobs []string
			for j := range s.lastGen {
				jobs = append(jobs, j)
			}
			s.mu.Unlock()
			return link.Refusal{Code: link.CodeJob, Reason: fmt.Sprintf("job id %q does not match this server's job %q", h.JobID, jobs)}
		}
	}
	// The generation is newer than any registered: wait for NewRing.
	if len(s.parked) >= MaxParked {
		s.mu.Unlock()
		return link.Refusal{Code: link.CodeGeneration, Reason: fmt.Sprintf("%d links already wait for a generation not started here", MaxParked)}
	}
	s.parked[in] = struct{}{}
	s.mu.Unlock()
	t := time.NewTimer(s.parkTimeout)
	defer t.Stop()
	select {
	case r := <-in.Decision():
		return r
	case <-t.C:
	case <-ctx.Done():
	}
	s.mu.Lock()
	delete(s.parked, in)
	s.mu.Unlock()
	in.Decide(link.Refusal{Code: link.CodeGeneration, Reason: fmt.Sprintf("generation %d of job %q was not started here within %v", h.Generation, h.JobID, s.parkTimeout)})
	return <-in.Decision()
}

// register makes cfg's ring the current one for its job: older rings of the
// job are broken with ErrGeneration and parked links are judged again.
func (s *Server) register(cfg allreduce.Config) (*slot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("allreduce: %w: server closed", allreduce.ErrClosed)
	}
	if last, ok := s.lastGen[cfg.JobID]; ok && cfg.Generation < last {
		return nil, fmt.Errorf("allreduce: %w: generation %d is older than generation %d already started on this server",
			allreduce.ErrGeneration, cfg.Generation, last)
	}
	if old := s.slots[cfg.JobID]; old != nil {
		if old.gen == cfg.Generation && old.ring == nil {
			return nil, fmt.Errorf("allreduce: %w: generation %d is already being connected on this server", allreduce.ErrGeneration, cfg.Generation)
		}
		if old.ring != nil {
			go old.ring.Abort(fmt.Errorf("%w: superseded by generation %d", allreduce.ErrGeneration, cfg.Generation))
		}
	}
	k := len(cfg.Peers)
	sl := &slot{job: cfg.JobID, gen: cfg.Generation, rank: cfg.Rank, left: (cfg.Rank + k - 1) % k, size: k, in: make(chan *link.Inbound, 1)}
	s.slots[cfg.JobID] = sl
	s.lastGen[cfg.JobID] = cfg.Generation
	for in := range s.parked {
		h := in.Hello
		switch {
		case h.JobID != cfg.JobID:
			if _, ok := s.lastGen[h.JobID]; !ok {
				delete(s.parked, in)
				in.Decide(link.Refusal{Code: link.CodeJob, Reason: fmt.Sprintf("job id %q does not match this server's job %q", h.JobID, cfg.JobID)})
			}
		case h.Generation < cfg.Generation:
			delete(s.parked, in)
			in.Decide(link.Refusal{Code: link.CodeGeneration, Reason: fmt.Sprintf("generation %d of job %q is stale: this server is at generation %d", h.Generation, h.JobID, cfg.Generation)})
		case h.Generation == cfg.Generation:
			delete(s.parked, in)
			if r := judge(sl, h); r != nil {
				in.Decide(*r)
				continue
			}
			sl.delivered = true
			sl.in <- in
			in.Decide(link.Refusal{})
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
		in.Link.Close()
	default:
	}
}

func (s *Server) attach(sl *slot, r *allreduce.Ring) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slots[sl.job] != sl || s.closed {
		return false
	}
	sl.ring = r
	return true
}

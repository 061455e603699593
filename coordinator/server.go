package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	pb "github.com/infonce/infonce/coordinator/coordinatorpb"
)

// GossipName is the memberlist node name of the coordinator.
const GossipName = "coordinator"

// ErrProtocolVersion refuses a worker that speaks another protocol version.
var ErrProtocolVersion = errors.New("control protocol version mismatch")

// Server is the coordinator: the rendezvous machine behind a gRPC service,
// driven by the wall clock and by memberlist gossip.
type Server struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	lis       net.Listener
	grpc      *grpc.Server
	gossip    *Gossip
	startedAt time.Time

	mu        sync.Mutex
	rv        *Rendezvous
	changed   chan struct{} // closed and replaced after every change
	logged    uint64        // last generation written to the log
	stoppedAt time.Time
	lastLog   time.Time
	lastAgg   Aggregate

	wake      chan struct{} // pokes the clock loop
	quit      chan struct{} // closed when the server shuts down
	serving   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New binds the gRPC listener and, unless disabled, starts the
// coordinator's memberlist node. Serve runs the service; Close releases
// everything when Serve is never called.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("job", cfg.JobID)
	s := &Server{
		cfg:     cfg,
		log:     logger,
		now:     time.Now,
		changed: make(chan struct{}),
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
	}
	s.startedAt = s.now()
	rc := cfg.rendezvous()
	if rc.IDPrefix == "" {
		rc.IDPrefix = incarnationPrefix(s.startedAt)
	}
	rv, err := NewRendezvous(rc, s.startedAt)
	if err != nil {
		return nil, err
	}
	s.rv = rv
	addr := net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.GRPCPort))
	s.lis, err = net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("coordinator: listen on %s: %w", addr, err)
	}
	if !cfg.DisableGossip {
		s.gossip, err = StartGossip(GossipConfig{
			Name:          GossipName,
			BindAddr:      cfg.BindAddr,
			BindPort:      cfg.GossipPort,
			AdvertiseAddr: cfg.AdvertiseAddr,
			Timings:       cfg.Gossip,
			SecretKey:     cfg.GossipKey,
			OnJoin:        func(name, addr string) { s.log.Debug("gossip node joined", "node", name, "addr", addr) },
			OnLeave:       s.gossipLeft,
			Logger:        logger,
		})
		if err != nil {
			_ = s.lis.Close()
			return nil, fmt.Errorf("coordinator: %w", err)
		}
	}
	opts := []grpc.ServerOption{grpc.KeepaliveParams(keepalive.ServerParameters{Time: cfg.Keepalive, Timeout: cfg.Keepalive}),
		// Workers ping idle connections every ClientKeepalive.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: ClientKeepalive / 2, PermitWithoutStream: true})}
	if cfg.Token != "" {
		auth := NewTokenAuth(cfg.Token)
		opts = append(opts, grpc.ChainUnaryInterceptor(auth.UnaryInterceptor()),
			grpc.ChainStreamInterceptor(auth.StreamInterceptor()))
	}
	opts = append(opts, hardening(cfg)...) // TLS, message and stream bounds (secure.go)
	s.grpc = grpc.NewServer(opts...)
	pb.RegisterCoordinatorServer(s.grpc, &service{s: s})
	return s, nil
}

// incarnationPrefix is the worker-id prefix of a coordinator started at t:
// "w", four base-36 digits of the start time in milliseconds, and "-". A
// restarted coordinator thus hands out ids (and gossip node names) that
// differ from its previous incarnation's.
func incarnationPrefix(t time.Time) string {
	const span = 36 * 36 * 36 * 36
	return fmt.Sprintf("w%04s-", strconv.FormatInt(t.UnixMilli()%span, 36))
}

// Addr returns the host:port workers dial.
func (s *Server) Addr() string {
	_, port, _ := net.SplitHostPort(s.lis.Addr().String())
	return net.JoinHostPort(s.cfg.advertise(), port)
}

// GossipAddr returns the host:port of the coordinator's memberlist node
// ("" when gossip is disabled).
func (s *Server) GossipAddr() string {
	if s.gossip == nil {
		return ""
	}
	return s.gossip.Addr()
}

// Serve runs the service until ctx is done or the run is finished (stopped,
// and every worker gone or StopGrace passed), then shuts down. It returns
// nil in both cases and an error when the service itself failed.
func (s *Server) Serve(ctx context.Context) error {
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("coordinator: Serve called twice")
	}
	select {
	case <-s.quit:
		return errors.New("coordinator: Serve after Close")
	default:
	}
	s.log.Info("coordinator serving", "addr", s.Addr(), "gossip", s.GossipAddr(),
		"min_workers", s.cfg.MinWorkers, "max_workers", s.cfg.MaxWorkers)
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.grpc.Serve(s.lis) }()

	err := s.loop(ctx, serveErr)
	closeErr := s.Close()
	if e := <-serveErr; err == nil && e != nil && !errors.Is(e, grpc.ErrServerStopped) {
		err = fmt.Errorf("coordinator: serve: %w", e)
	}
	if err == nil {
		err = closeErr
	}
	s.mu.Lock()
	phase := s.rv.Phase()
	s.mu.Unlock()
	s.log.Info("coordinator stopped", "phase", phase)
	return err
}

// loop drives the machine's timeouts and the progress log.
func (s *Server) loop(ctx context.Context, serveErr <-chan error) error {
	for {
		s.mu.Lock()
		now := s.now()
		s.tickLocked(now)
		next := s.nextWakeLocked(now)
		finished := s.finishedLocked(now)
		s.mu.Unlock()
		if finished {
			return nil
		}
		timer := time.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case err := <-serveErr:
			timer.Stop()
			return fmt.Errorf("coordinator: serve: %w", err)
		case <-s.wake:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// Close shuts the server down: Watch streams end, the gRPC server stops
// and the memberlist node leaves. Safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		stopped := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(2 * time.Second):
			s.grpc.Stop()
			<-stopped
		}
		if !s.serving.Load() {
			_ = s.lis.Close() // grpc closes it only when it served
		}
		if s.gossip != nil {
			// A leave that no node acknowledges in time (every worker has
			// gone already) is not a failure of the run.
			if err := s.gossip.Leave(200 * time.Millisecond); err != nil {
				s.log.Debug("gossip leave", "err", err)
			}
			s.closeErr = s.gossip.Shutdown()
		}
	})
	return s.closeErr
}

func (s *Server) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// tickLocked applies the machine's expired timeouts, WatchGrace included.
func (s *Server) tickLocked(now time.Time) {
	for _, u := range s.rv.Tick(now) {
		s.log.Warn("worker declared dead", "worker", u.ID, "reason", "no Watch stream", "for", u.For.Round(time.Millisecond))
	}
	if s.cfg.LogInterval > 0 && now.Sub(s.lastLog) >= s.cfg.LogInterval {
		s.lastLog = now
		if a := s.rv.Aggregate(); a.Workers > 0 && a != s.lastAgg {
			s.lastAgg = a
			s.log.Info("progress", "generation", a.Generation, "workers", a.Workers, "step", a.MaxStep,
				"min_step", a.MinStep, "loss", a.Loss, "samples_per_sec", a.SamplesPerSec)
		}
	}
	s.afterLocked(now)
}

func (s *Server) nextWakeLocked(now time.Time) time.Time {
	next := now.Add(time.Second)
	earlier := func(t time.Time) {
		if t.Before(next) {
			next = t
		}
	}
	// The machine's deadlines include the Watch streams' grace, but not
	// once the run has stopped (a stopped worker closes its stream): a
	// grace that passed would make the loop spin until StopGrace.
	if d, ok := s.rv.NextDeadline(); ok {
		earlier(d)
	}
	if s.cfg.LogInterval > 0 {
		earlier(s.lastLog.Add(s.cfg.LogInterval))
	}
	if !s.stoppedAt.IsZero() {
		earlier(s.stoppedAt.Add(s.cfg.StopGrace))
	}
	if next.Before(now) {
		next = now
	}
	return next
}

func (s *Server) finishedLocked(now time.Time) bool {
	if s.rv.Phase() != PhaseStopped {
		return false
	}
	active, pending := s.rv.Size()
	return active+pending == 0 || !now.Before(s.stoppedAt.Add(s.cfg.StopGrace))
}

// afterLocked logs new generations and wakes the Watch streams.
func (s *Server) afterLocked(now time.Time) {
	if g, ok := s.rv.Current(); ok && g.Number != s.logged {
		for _, g := range s.rv.Generations() {
			if g.Number <= s.logged {
				continue
			}
			s.log.Info("generation", "number", g.Number, "action", g.Action.String(), "world", len(g.Members),
				"members", g.Members, "start", g.Start.String(), "start_step", g.StartStep, "reason", g.Reason)
		}
		s.logged = g.Number
	}
	if s.rv.Phase() == PhaseStopped && s.stoppedAt.IsZero() {
		s.stoppedAt = now
		s.poke()
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// gossipLeft removes a worker that memberlist declared dead or left.
func (s *Server) gossipLeft(name, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.rv.Present(name) {
		s.log.Debug("gossip node left", "node", name, "addr", addr)
		return
	}
	now := s.now()
	s.log.Warn("worker declared dead", "worker", name, "reason", "gossip: node left or failed", "addr", addr)
	_ = s.rv.Dead(now, name, "gossip: node left or failed")
	s.afterLocked(now)
	s.poke()
}

// Status is a snapshot of the run for a status page.
type Status struct {
	JobID    string
	Phase    Phase
	Current  Generation   // Number 0 before the first generation
	History  []Generation // oldest first
	Members  []MemberStatus
	Progress Aggregate
	Latest   *Checkpoint // newest committed checkpoint
	// Finished is the step a worker reported the training done at; nil
	// while the training is not done.
	Finished  *int64
	Gossip    []string // memberlist nodes believed alive
	Addr      string
	StartedAt time.Time
	At        time.Time
}

// Status returns a snapshot of the run.
func (s *Server) Status() Status {
	var gossip []string
	if s.gossip != nil {
		gossip = s.gossip.Members() // outside s.mu: memberlist calls back under its own lock
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{
		JobID:     s.cfg.JobID,
		Phase:     s.rv.Phase(),
		History:   s.rv.Generations(),
		Members:   s.rv.Members(),
		Progress:  s.rv.Aggregate(),
		Gossip:    gossip,
		Addr:      s.Addr(),
		StartedAt: s.startedAt,
		At:        s.now(),
	}
	st.Current, _ = s.rv.Current()
	if c, ok := s.rv.LatestCheckpoint(); ok {
		st.Latest = &c
	}
	if step, ok := s.rv.Finished(); ok {
		st.Finished = &step
	}
	return st
}

// statusOf maps the machine's errors to gRPC status codes.
func statusOf(err error) error {
	var fm *FingerprintMismatchError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUnknownWorker):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrBadRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrRunStopped), errors.Is(err, ErrProtocolVersion), errors.Is(err, ErrStaleGeneration), errors.As(err, &fm):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// service implements the gRPC service over the Server.
type service struct {
	pb.UnimplementedCoordinatorServer
	s *Server
}

func (v *service) Join(_ context.Context, in *pb.JoinRequest) (*pb.JoinResponse, error) {
	s := v.s
	req, err := joinFromPB(in)
	if err != nil {
		s.log.Warn("join refused", "name", in.GetName(), "err", err)
		return nil, statusOf(err)
	}
	s.mu.Lock()
	now := s.now()
	id, err := s.rv.Join(now, req)
	if err == nil {
		s.log.Info("worker joined", "worker", id, "name", req.Name, "data_addr", req.DataAddr, "gossip_addr", req.GossipAddr)
	} else {
		s.log.Warn("join refused", "name", req.Name, "data_addr", req.DataAddr, "err", err)
	}
	s.afterLocked(now)
	s.mu.Unlock()
	s.poke()
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &pb.JoinResponse{WorkerId: id, JobId: s.cfg.JobID}
	if s.gossip != nil {
		resp.GossipSeeds = []string{s.gossip.Addr()}
	}
	return resp, nil
}

func (v *service) Watch(in *pb.WatchRequest, stream pb.Coordinator_WatchServer) error {
	s := v.s
	id := in.GetWorkerId()
	s.mu.Lock()
	if !s.rv.Present(id) {
		_, err := s.rv.Assignment(id)
		s.mu.Unlock()
		return statusOf(err)
	}
	_ = s.rv.WatchOpened(id) // present: checked above, under the same lock
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.rv.WatchClosed(s.now(), id) {
			s.log.Info("watch stream closed", "worker", id)
		}
		s.mu.Unlock()
		s.poke()
	}()

	after := in.GetAfterGeneration()
	var asked uint64 // the boundary requests this stream has passed on
	for {
		s.mu.Lock()
		a, err := s.rv.Assignment(id)
		asks := s.rv.BoundaryAsks()
		changed := s.changed
		s.mu.Unlock()
		switch {
		case errors.Is(err, ErrNotAssigned):
		case err != nil:
			return statusOf(err)
		case a.Generation > after:
			if err := stream.Send(assignmentToPB(a)); err != nil {
				return err
			}
			after, asked = a.Generation, asks
			if a.Action == ActionStop {
				return nil
			}
		case asks > asked && a.Generation == after && a.Action == ActionRun:
			// A joiner waits: the current assignment again, asking for
			// the next step boundary now.
			pb := assignmentToPB(a)
			pb.BoundaryWanted = true
			if err := stream.Send(pb); err != nil {
				return err
			}
			asked = asks
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-s.quit:
			return status.Error(codes.Unavailable, "coordinator shutting down")
		}
	}
}

func (v *service) Report(_ context.Context, in *pb.ReportRequest) (*pb.ReportResponse, error) {
	s := v.s
	id, gen := in.GetWorkerId(), in.GetGeneration()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var err error
	switch r := in.GetReport().(type) {
	case *pb.ReportRequest_Progress:
		err = s.rv.Progress(now, id, gen, Progress{Step: r.Progress.GetStep(), Loss: r.Progress.GetLoss(), SamplesPerSec: r.Progress.GetSamplesPerSec()})
	case *pb.ReportRequest_Boundary:
		err = s.rv.Boundary(now, id, gen, r.Boundary.GetStep())
	case *pb.ReportRequest_Error:
		s.log.Warn("worker error", "worker", id, "generation", gen, "step", r.Error.GetStep(),
			"fatal", r.Error.GetFatal(), "err", r.Error.GetMessage())
		err = s.rv.Fail(now, id, gen, r.Error.GetStep(), r.Error.GetMessage(), r.Error.GetFatal(), r.Error.GetAbortRun())
	case *pb.ReportRequest_Finished:
		err = s.rv.Finish(now, id, gen, r.Finished.GetStep())
	default:
		err = fmt.Errorf("%w: empty report", ErrBadRequest)
	}
	s.afterLocked(now)
	s.poke()
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &pb.ReportResponse{}
	if a, err := s.rv.Assignment(id); err == nil {
		resp.Generation = a.Generation
	}
	return resp, nil
}

func (v *service) CommitCheckpoint(_ context.Context, in *pb.CommitCheckpointRequest) (*pb.CommitCheckpointResponse, error) {
	s := v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if err := s.rv.CommitCheckpoint(now, in.GetWorkerId(), in.GetGeneration(), in.GetStep(), in.GetPath()); err != nil {
		return nil, statusOf(err)
	}
	s.log.Info("checkpoint committed", "worker", in.GetWorkerId(), "generation", in.GetGeneration(),
		"step", in.GetStep(), "path", in.GetPath())
	return &pb.CommitCheckpointResponse{}, nil
}

func (v *service) Leave(_ context.Context, in *pb.LeaveRequest) (*pb.LeaveResponse, error) {
	s := v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	id := in.GetWorkerId()
	if err := s.rv.Leave(now, id, in.GetReason()); err != nil {
		return nil, statusOf(err)
	}
	s.log.Info("worker left", "worker", id, "reason", in.GetReason())
	s.afterLocked(now)
	s.poke()
	return &pb.LeaveResponse{}, nil
}

package coordinator

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	pb "github.com/infonce/infonce/coordinator/coordinatorpb"
)

// Backoff is the exponential back-off a Client uses while the coordinator
// is unavailable: Base, 2*Base, 4*Base, ... up to Max, each wait scaled by
// a factor drawn from [1-Jitter, 1].
type Backoff struct {
	Base   time.Duration
	Max    time.Duration
	Jitter float64
}

// ClientKeepalive is the idle time after which a Client pings the
// coordinator, and how long it waits for the answer before it drops the
// connection. The server accepts pings this frequent.
const ClientKeepalive = 2 * time.Second

// DefaultBackoff suits a coordinator that restarts within seconds.
func DefaultBackoff() Backoff {
	return Backoff{Base: 50 * time.Millisecond, Max: time.Second, Jitter: 0.2}
}

// ClientOption changes a Client's settings.
type ClientOption func(*Client)

// DefaultFinishRetry bounds how long Finish retries while the coordinator
// is unavailable: a worker that could not report the end stays a member
// and finishes again in the generation a restarted coordinator opens.
const DefaultFinishRetry = 30 * time.Second

// WithFinishRetry sets how long Finish retries (DefaultFinishRetry).
func WithFinishRetry(d time.Duration) ClientOption { return func(c *Client) { c.finishFor = d } }

// WithBackoff sets the reconnection back-off.
func WithBackoff(b Backoff) ClientOption { return func(c *Client) { c.backoff = b } }

// WithClientLogger sets the client's logger (default slog.Default()).
func WithClientLogger(l *slog.Logger) ClientOption { return func(c *Client) { c.log = l } }

// WithDialOptions adds gRPC dial options (for example TLS credentials).
func WithDialOptions(opts ...grpc.DialOption) ClientOption {
	return func(c *Client) { c.dialOpts = append(c.dialOpts, opts...) }
}

// Client is a worker's connection to the coordinator. Calls retry with
// exponential back-off while the coordinator is unavailable, until their
// context ends. After Join, one Watch stream runs in the background (from
// the first NextAssignment) and reconnects by itself.
type Client struct {
	conn     *grpc.ClientConn
	rpc      pb.CoordinatorClient
	log      *slog.Logger
	backoff  Backoff
	dialOpts []grpc.DialOption
	addr     string
	// finishFor bounds the retries of Finish (WithFinishRetry).
	finishFor time.Duration

	mu       sync.Mutex
	rng      *rand.Rand
	id       string
	jobID    string
	seeds    []string
	latest   Assignment // Generation 0: none yet
	watchErr error      // terminal error of the background stream
	changed  chan struct{}
	watching bool
	stop     context.CancelFunc // stops the background stream
	loopDone chan struct{}      // closed when the background stream ended
	wg       sync.WaitGroup     // Watch goroutines
	closed   bool
	epoch    uint64        // counts Joins
	done     chan struct{} // closed by Close
	// asked receives when the coordinator asks for the next step boundary
	// (a worker waits to join); one pending request is enough.
	asked chan struct{}
}

// Dial prepares a connection to the coordinator at addr (host:port). The
// connection is made lazily; token, when not empty, is sent with every
// call.
func Dial(ctx context.Context, addr, token string, opts ...ClientOption) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dial coordinator %s: %w", addr, err)
	}
	c := &Client{log: slog.Default(), backoff: DefaultBackoff(), changed: make(chan struct{}), done: make(chan struct{}),
		asked: make(chan struct{}, 1), rng: rand.New(rand.NewPCG(hash64(addr), 0)), addr: addr, finishFor: DefaultFinishRetry}
	for _, o := range opts {
		o(c)
	}
	// Reconnect quickly once the coordinator is back: a connection attempt
	// whose packets are dropped (a partition) gives up after a second
	// instead of gRPC's twenty, and the channel's own back-off stays short;
	// the Client's back-off paces the calls.
	// The client also pings an idle connection (ClientKeepalive): a
	// connection that a partition or a restart left half-open, on which a
	// Watch stream would wait forever, is found broken within a few
	// seconds and replaced.
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: time.Second,
			Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: ClientKeepalive, Timeout: ClientKeepalive, PermitWithoutStream: true})}
	if token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearer(token)))
	}
	dial = append(dial, c.dialOpts...)
	conn, err := grpc.NewClient(addr, dial...)
	if err != nil {
		return nil, fmt.Errorf("dial coordinator %s: %w", addr, err)
	}
	c.conn = conn
	c.rpc = pb.NewCoordinatorClient(conn)
	return c, nil
}

func hash64(s string) uint64 {
	h := fnv.New64a()
	_, _ = io.WriteString(h, s)
	return h.Sum64()
}

// Join joins the run and returns the worker id. The id is also the name
// the worker's memberlist node must carry (see GossipSeeds). A worker that
// was removed from the run (ErrUnknownWorker, for example after a
// coordinator restart) joins again with the same Client and gets a new id;
// the assignments of the old id are forgotten.
func (c *Client) Join(ctx context.Context, req JoinRequest) (string, error) {
	c.stopWatch()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return "", errors.New("join: coordinator client is closed")
	}
	c.epoch++
	c.id, c.watching, c.stop, c.loopDone = "", false, nil, nil
	c.latest, c.watchErr = Assignment{}, nil
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	var resp *pb.JoinResponse
	err := c.retry(ctx, "join", func(ctx context.Context) error {
		var err error
		resp, err = c.rpc.Join(ctx, joinToPB(req))
		return err
	})
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.id, c.jobID, c.seeds = resp.GetWorkerId(), resp.GetJobId(), resp.GetGossipSeeds()
	// The jitter differs between workers but is reproducible for a worker.
	c.rng = rand.New(rand.NewPCG(hash64(req.DataAddr), hash64(c.id)))
	return c.id, nil
}

// ID returns the worker id given by Join ("" before).
func (c *Client) ID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// GossipSeeds returns the coordinator's memberlist addresses given by Join.
func (c *Client) GossipSeeds() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.seeds...)
}

// NextAssignment blocks until an assignment newer than afterGeneration is
// known and returns it. It returns an error when ctx ends, when the worker
// was removed from the run (errors.Is(err, ErrUnknownWorker); join again),
// or when the last assignment was a stop (errors.Is(err, ErrRunStopped)).
func (c *Client) NextAssignment(ctx context.Context, afterGeneration uint64) (Assignment, error) {
	if err := c.startWatch(); err != nil {
		return Assignment{}, err
	}
	c.mu.Lock()
	epoch := c.epoch
	c.mu.Unlock()
	for {
		c.mu.Lock()
		latest, werr, changed, joined := c.latest, c.watchErr, c.changed, c.epoch
		c.mu.Unlock()
		if joined != epoch {
			return Assignment{}, errors.New("next assignment: the client joined again; the old worker id is gone")
		}
		if latest.Generation > afterGeneration {
			return latest, nil
		}
		if latest.Action == ActionStop && latest.Generation != 0 {
			return Assignment{}, fmt.Errorf("next assignment after generation %d: %w (generation %d: %s)",
				afterGeneration, ErrRunStopped, latest.Generation, latest.Reason)
		}
		if werr != nil {
			return Assignment{}, werr
		}
		select {
		case <-changed:
		case <-c.done:
			return Assignment{}, errors.New("coordinator client is closed")
		case <-ctx.Done():
			return Assignment{}, fmt.Errorf("next assignment after generation %d: %w", afterGeneration, ctx.Err())
		}
	}
}

// Watch returns a channel of assignments, in generation order, until ctx
// ends or NextAssignment would fail; the channel is then closed.
func (c *Client) Watch(ctx context.Context) (<-chan Assignment, error) {
	if err := c.startWatch(); err != nil {
		return nil, err
	}
	ch := make(chan Assignment)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(ch)
		var after uint64
		for {
			a, err := c.NextAssignment(ctx, after)
			if err != nil {
				return
			}
			after = a.Generation
			select {
			case ch <- a:
			case <-ctx.Done():
				return
			case <-c.done:
				return
			}
		}
	}()
	return ch, nil
}

// StartWatch opens the background Watch stream at once (NextAssignment
// opens it otherwise): a worker that just joined calls it first, since the
// coordinator declares a joined worker without a stream dead after
// WatchGrace.
func (c *Client) StartWatch() error { return c.startWatch() }

func (c *Client) startWatch() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("coordinator client is closed")
	}
	if c.id == "" {
		return errors.New("watch before join")
	}
	if c.watching {
		return nil
	}
	c.watching = true
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	c.loopDone = make(chan struct{})
	go c.watchLoop(ctx, c.id, c.loopDone)
	return nil
}

// watchLoop keeps one Watch stream open, reconnecting with back-off.
func (c *Client) watchLoop(ctx context.Context, id string, done chan struct{}) {
	defer close(done)
	defer func() {
		c.mu.Lock()
		if c.watchErr == nil && c.latest.Action != ActionStop {
			c.watchErr = fmt.Errorf("watch %s stopped: the worker left or the client was closed", id)
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}()
	attempt := 0
	for {
		c.mu.Lock()
		after := c.latest.Generation
		c.mu.Unlock()
		err := c.watchOnce(ctx, id, after, &attempt)
		if ctx.Err() != nil {
			return
		}
		if err == nil { // the stream ended after a stop
			return
		}
		switch status.Code(err) {
		case codes.NotFound, codes.FailedPrecondition, codes.Unauthenticated, codes.PermissionDenied,
			codes.InvalidArgument, codes.Unimplemented:
			if status.Code(err) == codes.NotFound {
				err = fmt.Errorf("watch %s: %w (%s)", id, ErrUnknownWorker, status.Convert(err).Message())
			} else {
				err = fmt.Errorf("watch %s: %w", id, err)
			}
			c.mu.Lock()
			c.watchErr = err
			c.mu.Unlock()
			return
		}
		wait := c.wait(attempt)
		attempt++
		c.log.Debug("watch stream broken, reconnecting", "worker", id, "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// watchOnce runs one stream; it returns nil when the stream ended after a
// stop order.
func (c *Client) watchOnce(ctx context.Context, id string, after uint64, attempt *int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Watch(ctx, &pb.WatchRequest{WorkerId: id, AfterGeneration: after})
	if err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			c.mu.Lock()
			stopped := c.latest.Action == ActionStop
			c.mu.Unlock()
			if stopped {
				return nil
			}
			return status.Error(codes.Unavailable, "watch stream ended")
		}
		if err != nil {
			return err
		}
		*attempt = 0
		if m.GetBoundaryWanted() {
			select {
			case c.asked <- struct{}{}:
			default: // one request pending is enough
			}
		}
		a, err := assignmentFromPB(m)
		if err != nil {
			c.log.Error("ignoring assignment", "worker", id, "err", err)
			continue
		}
		c.mu.Lock()
		if a.Generation > c.latest.Generation {
			c.latest = a
			close(c.changed)
			c.changed = make(chan struct{})
		}
		c.mu.Unlock()
	}
}

// BoundaryWanted receives when the coordinator asks for this worker's next
// step boundary at once, because a worker waits to join the run and is
// admitted only at a boundary reported by a rank (Boundary). A worker
// that reports its boundaries now and then reports the next one when this
// receives.
func (c *Client) BoundaryWanted() <-chan struct{} { return c.asked }

// wait returns the back-off before attempt (0-based).
func (c *Client) wait(attempt int) time.Duration {
	d := c.backoff.Base
	for i := 0; i < attempt && d < c.backoff.Max; i++ {
		d *= 2
	}
	if d > c.backoff.Max {
		d = c.backoff.Max
	}
	c.mu.Lock()
	f := 1 - c.backoff.Jitter*c.rng.Float64()
	c.mu.Unlock()
	return time.Duration(float64(d) * f)
}

type noRetryKey struct{}

// NoRetry returns a context under which the Client's calls make one attempt
// and return the coordinator's unavailability as an error instead of
// retrying with back-off. A training loop uses it for the reports it makes
// between steps, so that a coordinator that is down or restarting does not
// hold up the data plane.
func NoRetry(ctx context.Context) context.Context {
	return context.WithValue(ctx, noRetryKey{}, true)
}

// retry calls f until it succeeds, fails with something other than
// Unavailable, or ctx ends (or once, under NoRetry).
func (c *Client) retry(ctx context.Context, what string, f func(context.Context) error) error {
	once := ctx.Value(noRetryKey{}) != nil
	for attempt := 0; ; attempt++ {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil || once {
			return c.wrap(what, err)
		}
		if tlsErr := tlsRefusal(err); tlsErr != nil { // secure.go
			return fmt.Errorf("%s: %w", what, tlsErr)
		}
		wait := c.wait(attempt)
		level := slog.LevelDebug
		if what == "join" && attempt%10 == 0 {
			// A worker that cannot join says so (a wrong --coordinator,
			// a coordinator not started yet), about every ten seconds.
			level = slog.LevelInfo
		}
		c.log.Log(ctx, level, "coordinator not answering, retrying", "coordinator", c.addr, "call", what, "attempt", attempt+1, "err", status.Convert(err).Message(), "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: coordinator unavailable (%v): %w", what, status.Convert(err).Message(), ctx.Err())
		case <-t.C:
		}
	}
}

// wrap turns a status error into one that errors.Is recognises.
func (c *Client) wrap(what string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch st.Code() {
	case codes.NotFound:
		return fmt.Errorf("%s: %w (%s)", what, ErrUnknownWorker, st.Message())
	case codes.InvalidArgument:
		return fmt.Errorf("%s: %w (%s)", what, ErrBadRequest, st.Message())
	case codes.FailedPrecondition:
		if strings.Contains(st.Message(), ErrRunStopped.Error()) {
			return fmt.Errorf("%s: %w: %w", what, ErrRunStopped, err)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (c *Client) worker() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.id == "" {
		return "", errors.New("not joined")
	}
	return c.id, nil
}

func (c *Client) report(ctx context.Context, what string, r *pb.ReportRequest) (uint64, error) {
	id, err := c.worker()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	r.WorkerId = id
	var resp *pb.ReportResponse
	err = c.retry(ctx, what, func(ctx context.Context) error {
		var err error
		resp, err = c.rpc.Report(ctx, r)
		return err
	})
	return resp.GetGeneration(), err
}

// Report sends progress for generation gen.
func (c *Client) Report(ctx context.Context, gen uint64, p Progress) error {
	_, err := c.report(ctx, "report progress", &pb.ReportRequest{Generation: gen,
		Report: &pb.ReportRequest_Progress{Progress: &pb.Progress{Step: p.Step, Loss: p.Loss, SamplesPerSec: p.SamplesPerSec}}})
	return err
}

// Boundary reports that the worker, in generation gen, completed step
// optimizer steps and is about to start the next. It returns the latest
// generation that concerns the worker: when it is newer than gen, the
// worker must not start the step but take the new assignment.
func (c *Client) Boundary(ctx context.Context, gen uint64, step int64) (uint64, error) {
	return c.report(ctx, "report boundary", &pb.ReportRequest{Generation: gen,
		Report: &pb.ReportRequest_Boundary{Boundary: &pb.Boundary{Step: step}}})
}

// ReportError reports an error at step; a fatal one removes the worker
// from the run.
func (c *Client) ReportError(ctx context.Context, gen uint64, step int64, msg string, fatal bool) error {
	_, err := c.report(ctx, "report error", &pb.ReportRequest{Generation: gen,
		Report: &pb.ReportRequest_Error{Error: &pb.WorkerError{Step: step, Message: msg, Fatal: fatal}}})
	return err
}

// Abort reports an error of the run itself, met by every rank at step (for
// example too many non-finite steps in a row): the coordinator stops the
// run.
func (c *Client) Abort(ctx context.Context, gen uint64, step int64, msg string) error {
	_, err := c.report(ctx, "report abort", &pb.ReportRequest{Generation: gen,
		Report: &pb.ReportRequest_Error{Error: &pb.WorkerError{Step: step, Message: msg, Fatal: true, AbortRun: true}}})
	return err
}

// Finish reports that training completed at step; the run stops. A report
// from a generation that is no longer the current one is refused: the
// worker must take the newer assignment.
//
// While the coordinator is unavailable Finish retries for at most
// DefaultFinishRetry (WithFinishRetry).
func (c *Client) Finish(ctx context.Context, gen uint64, step int64) error {
	ctx, cancel := context.WithTimeout(ctx, c.finishFor)
	defer cancel()
	_, err := c.report(ctx, "report finish", &pb.ReportRequest{Generation: gen,
		Report: &pb.ReportRequest_Finished{Finished: &pb.Finished{Step: step}}})
	return err
}

// CommitCheckpoint announces a checkpoint saved at step under path.
func (c *Client) CommitCheckpoint(ctx context.Context, gen uint64, step int64, path string) error {
	id, err := c.worker()
	if err != nil {
		return fmt.Errorf("commit checkpoint: %w", err)
	}
	return c.retry(ctx, "commit checkpoint", func(ctx context.Context) error {
		_, err := c.rpc.CommitCheckpoint(ctx, &pb.CommitCheckpointRequest{WorkerId: id, Generation: gen, Step: step, Path: path})
		return err
	})
}

// Leave removes the worker from the run and stops its Watch stream.
func (c *Client) Leave(ctx context.Context, reason string) error {
	id, err := c.worker()
	if err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	c.stopWatch()
	return c.retry(ctx, "leave", func(ctx context.Context) error {
		_, err := c.rpc.Leave(ctx, &pb.LeaveRequest{WorkerId: id, Reason: reason})
		return err
	})
}

// stopWatch ends the background stream and waits for it.
func (c *Client) stopWatch() {
	c.mu.Lock()
	stop, done := c.stop, c.loopDone
	c.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// Close stops the Watch stream and closes the connection, without leaving:
// the coordinator sees the worker as gone once WatchGrace passes.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	c.mu.Unlock()
	c.stopWatch()
	c.wg.Wait()
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("close coordinator client: %w", err)
	}
	return nil
}

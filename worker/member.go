package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/dataplane"
	"github.com/infonce/infonce/allreduce/shm"
	"github.com/infonce/infonce/coordinator"
	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/worker/membership"
)

// MemberOptions configure one worker process of a distributed run.
type MemberOptions struct {
	Coordinator string // host:port of the coordinator's gRPC service
	Token       string // shared secret of the control plane ("" for none)
	Name        string // a label for logs (host or pod name)

	DataBind      string // data-plane listen address, host:port (port 0: any free port)
	DataAdvertise string // host other workers dial for the data plane ("" : the bound host)

	GossipBind      string // memberlist bind IP ("" : no gossip)
	GossipAdvertise string // memberlist advertise IP ("" : GossipBind)
	GossipPort      int    // memberlist port (0: any free port)
	GossipLAN       bool   // LAN timings instead of the fast local ones
	GossipKey       []byte // gossip encryption key (16, 24 or 32 bytes), if any

	// TLSServer, when set, serves the data-plane listener over TLS (with
	// mutual TLS when it requires client certificates); TLSClient, when
	// set, is used to reach the coordinator and the ring neighbours. Token
	// also guards the data plane.
	TLSServer *tls.Config
	TLSClient *tls.Config

	// Fingerprint, when set, is the worker's own configuration's
	// (Config.FingerprintFields): the coordinator refuses the worker when
	// it differs from the run's. Without it the worker trains whatever
	// configuration the coordinator hands out.
	Fingerprint map[string]string

	Out string // overrides the run configuration's output directory
	// OutRoot, when set and Out is not, is where the coordinator's run
	// directory must lie.
	OutRoot string
	// NoSharedMemory keeps the data plane on TCP even towards workers of
	// the same machine (which otherwise exchange frames through shared
	// memory).
	NoSharedMemory bool
	Progress       io.Writer     // rank 0's progress line; nil for none
	Logger         *slog.Logger  // nil: slog.Default()
	Evaluate       bool          // rank 0 evaluates at the end
	OpTimeout      time.Duration // deadline of one collective (0: allreduce's default)
	// Stall sets the deadlines of a step's collectives from their measured
	// durations (zero: DefaultStallPolicy(OpTimeout)).
	Stall    StallPolicy
	Observer Observer // nil for none
	// EvalWait bounds how long the other ranks wait for rank 0's
	// evaluation of --eval-every (0: DefaultEvalWait). The wait is not a
	// collective of the step: the stall deadlines neither bound it nor
	// learn from it.
	EvalWait time.Duration
	// Backoff is the reconnection back-off towards the coordinator (zero:
	// coordinator.DefaultBackoff).
	Backoff coordinator.Backoff
	// JoinTimeout bounds the first join: a coordinator that does not
	// answer within it (a wrong address) ends the worker with an error
	// (0: DefaultJoinTimeout).
	JoinTimeout time.Duration
	// Faults are injected into the worker, for tests (zero: none).
	Faults Faults
}

// DefaultEvalWait is how long the other ranks wait, at most, for rank 0's
// evaluation of --eval-every before they take rank 0 for lost. A rank 0
// that dies or vanishes ends the wait sooner: its sockets close, TCP
// keepalive gives up on it, or the coordinator opens a newer generation.
const DefaultEvalWait = time.Hour

// DefaultJoinTimeout is how long a worker tries to join its coordinator
// before it gives up.
const DefaultJoinTimeout = 2 * time.Minute

// ErrAborted reports a run that stopped because every rank met the same
// error, for example too many non-finite steps in a row.
var ErrAborted = errors.New("run aborted")

// RunMember joins the run of the coordinator and trains until the run ends:
// it takes every generation the coordinator assigns (rank, ring, start
// state), builds the ring over one long-lived data-plane listener, and runs
// the steps. A failed collective or a newer generation ends the current
// generation; the worker then waits for the next one, keeping its state.
// When the coordinator forgets the worker (it restarted, or it declared the
// worker dead during a partition or a stall), the worker joins again,
// announcing the state it holds, and carries on as the coordinator decides.
// When ctx ends, the worker asks every rank to stop after the current step;
// rank 0 saves a checkpoint, and the worker leaves. Rank 0 writes
// metrics.jsonl and, at the end, the final checkpoint, the evaluation and
// summary.json.
func RunMember(ctx context.Context, o MemberOptions) (*Summary, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	srv, err := dataplane.Listen(o.DataBind, append(o.securityOptions(), dataplane.WithLogger(log))...)
	if err != nil {
		return nil, fmt.Errorf("data plane: %w", err)
	}
	defer srv.Close()
	dataAddr := srv.Addr()
	if o.DataAdvertise != "" {
		_, port, _ := net.SplitHostPort(dataAddr)
		dataAddr = net.JoinHostPort(o.DataAdvertise, port)
	}
	// The control plane must outlive a stop request: the worker still
	// reports and leaves after ctx ends.
	ctl, cancelCtl := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCtl()
	opts := []coordinator.ClientOption{coordinator.WithClientLogger(log)}
	if o.Backoff.Base > 0 {
		opts = append(opts, coordinator.WithBackoff(o.Backoff))
	}
	client, err := coordinator.Dial(ctl, o.Coordinator, o.Token, append(opts, o.dialSecurity()...)...)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Stall == (StallPolicy{}) {
		o.Stall = DefaultStallPolicy(o.OpTimeout)
	}
	m := &member{o: o, log: log, client: client, srv: srv, stop: ctx, changed: make(chan struct{}),
		mach:    membership.New(membership.DefaultConfig()),
		stall:   newStallDeadlines(o.Stall),
		joinReq: coordinator.JoinRequest{Name: o.Name, DataAddr: dataAddr, Fingerprint: o.Fingerprint}}
	joinTimeout := o.JoinTimeout
	if joinTimeout <= 0 {
		joinTimeout = DefaultJoinTimeout
	}
	joinCtx, cancelJoin := context.WithTimeout(ctl, joinTimeout)
	stopJoin := context.AfterFunc(ctx, cancelJoin)
	err = m.join(joinCtx)
	timedOut := errors.Is(joinCtx.Err(), context.DeadlineExceeded)
	stopJoin()
	cancelJoin()
	if err != nil && timedOut {
		return nil, fmt.Errorf("no coordinator answered at %s within --join-timeout %v: check --coordinator and that the coordinator runs: %w", o.Coordinator, joinTimeout, err)
	}
	if err != nil {
		return nil, err
	}
	defer m.closeGossip()
	controlled := make(chan struct{})
	go func() { defer close(controlled); m.control(ctl) }()

	sum, err := m.run(ctl)
	if m.t != nil {
		m.t.Close()
	}
	if m.shared != nil {
		// Every ring is closed and the trainer is done with its gradient.
		if err := m.shared.Close(); err != nil {
			m.log.Warn("shared gradient buffer", "err", err)
		}
	}
	if m.rec != nil {
		m.rec.close()
	}
	m.samples.close()
	leaveCtx, cancel := context.WithTimeout(ctl, 2*time.Second)
	defer cancel()
	reason := "done"
	switch {
	case errors.Is(err, ErrStopped):
		reason = "stopped on request"
	case err != nil:
		reason = "failed: " + err.Error()
	}
	_ = client.Leave(leaveCtx, reason)
	cancelCtl()
	<-controlled
	return sum, err
}

// member is the I/O of one worker across generations: the sockets, the
// trainer, the files. Its decisions are mach's (package membership): the
// training loop feeds mach the events and does what it answers.
type member struct {
	o      MemberOptions
	log    *slog.Logger
	client *coordinator.Client
	srv    *dataplane.Server
	stop   context.Context // ends when the worker is asked to stop

	joinReq coordinator.JoinRequest
	gossip  *coordinator.Gossip // owned by join and control

	// The latest assignment, published by control for the training loop.
	mu        sync.Mutex
	latest    coordinator.Assignment
	latestErr error
	changed   chan struct{} // closed and replaced on every publish
	jobID     string

	// mach is the generation logic, owned by the training loop; held is
	// what it holds, published for control's re-joins.
	mach   *membership.Machine
	heldMu sync.Mutex
	held   membership.Held

	spec RunSpec
	cfg  Config
	t    *Trainer[float32]
	rec  *recorder
	// shared holds the trainer's gradient where the workers of this
	// machine can read it (gradStorage); nil when it is plain memory.
	shared  *shm.SharedVector
	started time.Time

	faults  faults
	samples *sampleLog
	// stall holds the measured durations of the step's collectives, which
	// set their deadlines, across generations.
	stall   *stallDeadlines
	stepNow int64 // the step being run, for the injected faults

	saveFailures int // periodic saves of this process that failed
	// evalTime is the time the training stood still for the evaluations
	// of --eval-every: not the training's time.
	evalTime time.Duration
	// changedSettings are the settings this run changed from the
	// checkpoint it started from.
	changedSettings []ChangedSetting

	last     StepStats // the last step this worker completed,
	lastGen  uint64    // in this generation
	haveLast bool
}

// run takes the coordinator's assignments one after another and does what
// the machine decides for each: start the generation, save, report an abort
// or a fatal error, leave.
func (m *member) run(ctl context.Context) (*Summary, error) {
	m.started = time.Now()
	var broken error // why the last generation's ring failed, if it did
	for {
		gen := m.mach.Generation()
		var acts []membership.Action
		a, cause := m.waitAssignment(ctl, gen, broken)
		broken = nil
		if cause != nil {
			acts = m.mach.WaitEnded(waitOutcome(cause))
		} else {
			m.log.Info("generation", "gen", a.Generation, "action", a.Action, "rank", a.Rank, "world", a.World,
				"start", a.Start, "step", a.StartStep, "reason", a.Reason)
			acts = m.mach.Assigned(a)
		}
		m.publishHeld()
		var sum *Summary
		for len(acts) > 0 {
			act := acts[0]
			acts = acts[1:]
			gen := m.mach.Generation()
			switch act.Kind {
			case membership.Save:
				if _, err := m.save(ctl, gen, act.Step); err != nil {
					if !act.BestEffort {
						return nil, err
					}
					m.log.Warn("stopping without a checkpoint of the state held", "held_step", act.Step, "err", err)
				}
			case membership.Start:
				var done bool
				sum, done, cause = m.generation(ctl, act.Assignment)
				o := generationOutcome(done, cause)
				if o == membership.Failed {
					m.log.Warn("generation ended", "gen", gen, "err", cause)
					broken = cause
				}
				acts = append(acts, m.mach.GenerationEnded(o)...)
				m.publishHeld()
			case membership.ReportAbort:
				_ = m.client.Abort(coordinator.NoRetry(ctl), gen, act.Step, cause.Error())
			case membership.ReportFatal:
				_ = m.client.ReportError(coordinator.NoRetry(ctl), gen, act.Step, cause.Error(), true)
			case membership.Exit:
				switch act.Outcome {
				case membership.Finished:
					return sum, nil
				case membership.RunStopped:
					if cause != nil {
						m.log.Info("run stopped by the coordinator")
					}
					// Another rank met the run's error first and this one
					// learnt of it from the stop: the run ends aborted here
					// too, as it does on the ranks that met it.
					if cause == nil && a.Aborted() {
						return nil, fmt.Errorf("%w: %s", ErrAborted, a.Reason)
					}
					return nil, nil
				case membership.Stopped, membership.Aborted, membership.Fatal:
					return nil, cause
				}
				if cause == nil {
					return nil, fmt.Errorf("generation %d: unknown action %v", gen, a.Action)
				}
				return nil, fmt.Errorf("waiting for an assignment after generation %d: %w", gen, cause)
			default:
				return nil, fmt.Errorf("generation %d: unexpected action %v", gen, act)
			}
		}
	}
}

// generationOutcome classifies how a generation ended.
func generationOutcome(done bool, err error) membership.Outcome {
	switch {
	case errors.Is(err, ErrStopped):
		return membership.Stopped
	case errors.Is(err, ErrAborted):
		return membership.Aborted
	case errors.Is(err, errFatal):
		return membership.Fatal
	case err != nil:
		return membership.Failed
	case done:
		return membership.Finished
	}
	return membership.Continue
}

// RingReportAfter is how long a worker whose ring failed (broken, not
// cancelled by a newer generation) waits for the coordinator's next
// generation before it reports the failure itself. A member that died is
// declared dead by then (its control stream closed, or gossip: within 2 s
// with the LAN timings); a ring that broke with every member alive (a
// stall longer than the data plane's deadline but shorter than the failure
// detectors', a link that failed alone) would otherwise wait for a
// generation nobody opens. The coordinator answers with a new generation
// of the same members.
const RingReportAfter = 2 * time.Second

// waitAssignment waits for the generation after gen. A stop request ends
// the wait (while the worker is paused, or between generations after a
// broken ring) with ErrStopped. After a broken ring (broken, its cause),
// the worker reports it when no generation came within RingReportAfter.
func (m *member) waitAssignment(ctl context.Context, gen uint64, broken error) (coordinator.Assignment, error) {
	wctx, cancel := context.WithCancel(ctl)
	defer cancel()
	stopWait := context.AfterFunc(m.stop, cancel)
	defer stopWait()
	if broken != nil {
		rctx, cancelReport := context.WithTimeout(wctx, RingReportAfter)
		a, err := m.nextAssignment(rctx, gen)
		cancelReport()
		if err == nil {
			return a, nil
		}
		if errors.Is(err, context.DeadlineExceeded) && wctx.Err() == nil {
			next, _ := m.mach.Next()
			m.log.Warn("no new generation since the ring broke; telling the coordinator", "gen", gen, "after", RingReportAfter, "err", broken)
			if err := m.client.ReportError(coordinator.NoRetry(wctx), gen, next, "ring broken: "+broken.Error(), false); err != nil {
				m.log.Warn("report of the broken ring", "err", err)
			}
		}
	}
	a, err := m.nextAssignment(wctx, gen)
	if err == nil || m.stop.Err() == nil || ctl.Err() != nil {
		return a, err
	}
	next, _ := m.mach.Next()
	m.log.Info("stopping on request while waiting for a generation", "after_generation", gen, "held_step", next)
	return coordinator.Assignment{}, ErrStopped
}

// waitOutcome classifies how a wait for an assignment failed.
func waitOutcome(err error) membership.Outcome {
	switch {
	case errors.Is(err, ErrStopped):
		return membership.Stopped
	case errors.Is(err, coordinator.ErrRunStopped):
		return membership.RunStopped
	}
	return membership.Broken
}

// errFatal marks errors after which the worker must not continue.
var errFatal = errors.New("fatal")

// generation runs one ActionRun assignment. It returns done when the
// training finished.
func (m *member) generation(ctl context.Context, a coordinator.Assignment) (*Summary, bool, error) {
	gen := a.Generation
	genCtx, cancel := context.WithCancel(ctl)
	defer cancel()
	// A newer generation ends this one: its collectives fail at once.
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		if _, err := m.nextAssignment(genCtx, gen); err == nil || !errors.Is(err, context.Canceled) {
			cancel()
		}
	}()
	defer watch.Wait()
	defer cancel()

	run, err := m.configure(a)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", errFatal, err)
	}
	m.mach.Configured(run)
	m.publishHeld()
	ring, err := dataplane.NewRing(genCtx, m.srv, m.cfg.withGradWire(allreduce.Config{
		JobID: a.JobID, Generation: gen, Rank: a.Rank, Peers: a.Peers, Timeout: m.o.OpTimeout,
		Token: m.o.Token, TLS: m.o.TLSClient, Logger: m.log,
		Transport: dataTransport(m.o.TLSClient != nil, m.o.NoSharedMemory), BucketBytes: m.cfg.BucketKiB << 10,
		Shared: m.shared, OnWait: m.t.PrefetchSome,
	}))
	if err != nil {
		return nil, false, fmt.Errorf("ring of generation %d: %w", gen, err)
	}
	defer ring.Close()
	if ring.Size() > 1 {
		m.log.Info("data plane", "gen", gen, "transport", ring.Config().Transport, "in_place_allreduce", ring.InPlace())
	}
	next, bad, err := m.startState(genCtx, ring, a)
	if err != nil {
		return nil, false, err
	}
	m.mach.Started(ring.Rank(), ring.Size(), next, bad)
	m.publishHeld()
	m.o.Observer.GenerationStarted(gen, ring.Rank(), ring.Size())
	return m.train(genCtx, ctl, ring, a)
}

// train runs steps until the end of the run, a graceful stop, or the end of
// the generation, doing what the machine decides at every step boundary and
// after every step.
func (m *member) train(ctx, ctl context.Context, ring *allreduce.Ring, a coordinator.Assignment) (*Summary, bool, error) {
	t, gen, rank := m.t, a.Generation, ring.Rank()
	if rank == 0 {
		if err := m.openRecorder(ring.Size()); err != nil {
			return nil, false, fmt.Errorf("%w: %w", errFatal, err)
		}
	}
	var comm Comm[float32] = ring
	if len(m.faults.killSteps) > 0 {
		comm = killComm{Ring: ring, step: &m.stepNow, atSteps: m.faults.killSteps, delay: 200 * time.Microsecond}
	}
	comm = m.stall.wrap(comm)
	local := func() int { lo, hi := dataset.Shard(m.cfg.Batch, ring.Size(), rank); return hi - lo }()
	rep := m.startReporter(ctx, gen)
	defer rep.stop()
	// This rank's own mean step time, logged when the generation ends:
	// the run files hold rank 0's, and the ranks' waits differ.
	var mine Breakdown
	var mineN int
	defer func() {
		if mineN == 0 {
			return
		}
		b := mine.scale(1 / float64(mineN))
		m.log.Info("mean step time of this rank", "generation", gen, "rank", rank, "steps", mineN,
			"data_ms", b.DataMS, "forward_ms", b.ForwardMS, "gather_ms", b.GatherMS, "loss_ms", b.LossMS,
			"backward_ms", b.BackwardMS, "reduce_ms", b.ReduceMS, "optimizer_ms", b.OptimizerMS, "total_ms", b.TotalMS)
	}()
	stepStart := time.Now()
	var saveErr error // how rank 0's last periodic save went
	for {
		// Joiners are admitted at step boundaries: a newer generation
		// means the next step must not start.
		var newest uint64
		if !m.mach.AtEnd() {
			next, _ := m.mach.Next()
			newest = rep.boundary(next)
		}
		act := m.mach.Boundary(newest, m.stop.Err() != nil)
		switch act.Kind {
		case membership.Run:
		case membership.Finish:
			return m.finish(ctl, ring, gen)
		case membership.End:
			if act.Outcome == membership.Newer {
				return nil, false, fmt.Errorf("generation %d is newer", act.Newer)
			}
			// Rank 0 reports the end once its checkpoint is safe; until
			// then this rank stays a member, ready to take over if rank
			// 0 dies.
			return nil, false, nil
		default:
			return nil, false, fmt.Errorf("generation %d: unexpected action %v at a step boundary", gen, act)
		}
		step := act.Step
		if act.AskStop {
			t.StopRequested.Store(true)
		}
		m.stepNow = step
		st, err := t.Step(ctx, comm, step)
		nonFinite := errors.Is(err, ErrNonFinite)
		if err != nil && !nonFinite {
			return nil, false, err
		}
		acts := m.mach.StepDone(time.Now(), step, membership.StepResult{NonFinite: nonFinite, Stop: st.Stop})
		m.publishHeld()
		// The rate of a step counts from the end of the previous finite
		// step's progress report, as the checksum and the checkpoint
		// that follow it belong to the next step's time.
		restarted := nonFinite
		restart := func() {
			if !restarted {
				stepStart, restarted = time.Now(), true
			}
		}
		for _, x := range acts {
			switch x.Kind {
			case membership.Skip:
				// Every rank summed the same non-finite values: all skip
				// this step alike, and all count it.
				m.samples.write(SampleRecord{Event: "skipped", Worker: m.o.Name, Generation: gen, World: ring.Size(), Rank: rank, Step: step, Epoch: st.Epoch})
				m.log.Warn("step skipped: the summed loss or gradient is not finite; the parameters are unchanged",
					"step", step, "loss", st.Loss, "bad_in_a_row", x.Bad, "max_bad_steps", m.spec.MaxBadSteps)
			case membership.Record:
				m.samples.write(SampleRecord{Event: "done", Worker: m.o.Name, Generation: gen, World: ring.Size(), Rank: rank, Step: step, Epoch: st.Epoch})
				m.o.Observer.StepDone(st, gen, rank, ring.Size())
				m.last, m.lastGen, m.haveLast = st, gen, true
				mine.add(st.Times)
				mineN++
				if m.rec != nil && rank == 0 {
					m.rec.workers = ring.Size()
					if err := m.rec.step(st, gen); err != nil {
						return nil, false, fmt.Errorf("%w: %w", errFatal, err)
					}
				}
			case membership.Progress:
				rate := float64(local) / time.Since(stepStart).Seconds()
				rep.progress(coordinator.Progress{Step: x.Step, Loss: st.Loss, SamplesPerSec: rate})
			case membership.Checksum:
				restart()
				if err := checkParams(ctx, ring, t.Model.P.W, x.Step); err != nil {
					return nil, false, err
				}
			case membership.Save:
				restart()
				_, err := m.save(ctl, gen, x.Step)
				switch {
				case err == nil:
				case x.Retry:
					// Not fatal: the state is in memory, the next
					// interval saves again, and ShareSave tells every
					// rank, so that all stop together if it keeps failing.
					m.saveFailures++
					if m.rec != nil {
						m.rec.saveFailures = m.saveFailures
					}
					saveFailed(m.o.Observer, x.Step, err)
					m.log.Warn("checkpoint failed; the state is kept in memory and saved again at the next interval",
						"step", x.Step, "failed_in_a_row", x.SaveFailures+1, "max_save_failures", m.spec.MaxSaveFailures, "err", err)
				case x.BestEffort:
					m.log.Warn("no checkpoint of the last finite state", "err", err)
				default:
					return nil, false, err
				}
				if x.Retry {
					saveErr = err
				}
			case membership.ShareSave:
				restart()
				n, err := shareSave(ctx, ring, x.SaveFailures, saveErr)
				if err != nil {
					return nil, false, err
				}
				if n > 0 && rank != 0 {
					m.log.Warn("rank 0 could not write the checkpoint; it saves again at the next interval",
						"step", x.Step, "failed_in_a_row", n, "max_save_failures", m.spec.MaxSaveFailures)
				}
				for _, y := range m.mach.SaveShared(x.Step, n) {
					if y.Kind == membership.End && y.Outcome == membership.Aborted {
						return nil, false, fmt.Errorf("%w: %w", ErrAborted,
							saveFailuresError(y.SaveFailures, y.Step, m.spec.MaxSaveFailures, m.cfg.Out, saveErr))
					}
					return nil, false, fmt.Errorf("generation %d: unexpected action %v after a save", gen, y)
				}
			case membership.End:
				restart()
				switch x.Outcome {
				case membership.Aborted:
					return nil, false, fmt.Errorf("%w: %d non-finite steps in a row (steps %d to %d, --max-bad-steps %d): the loss or the gradients are NaN or Inf; "+
						"the parameters were never updated with them; lower --lr or --clip-norm, check the data, or resume from the last checkpoint",
						ErrAborted, x.Bad, x.Step-int64(x.Bad)+1, x.Step, m.spec.MaxBadSteps)
				case membership.Stopped:
					m.log.Info("stopping on request", "after_step", step+1)
					return nil, false, ErrStopped
				}
				return nil, false, fmt.Errorf("generation %d: unexpected end %v after step %d", gen, x, step)
			default:
				return nil, false, fmt.Errorf("generation %d: unexpected action %v after step %d", gen, x, step)
			}
		}
		if !nonFinite && m.evalDue(step) {
			if err := m.evaluate(ctx, ring, st); err != nil {
				return nil, false, err
			}
			stepStart, restarted = time.Now(), true
		}
		restart()
	}
}

// evalDue reports whether --eval-every evaluates the parameters after step
// (counted from 0), as a single process does: after every N-th completed
// step but the last, whose evaluation is the summary's.
func (m *member) evalDue(step int64) bool {
	every := int64(m.cfg.EvalEvery)
	return every > 0 && (step+1)%every == 0 && step+1 < m.t.TotalSteps()
}

// evaluate runs the evaluation of --eval-every after step st.Step. The
// parameters are the same on every rank, so rank 0 alone evaluates them and
// writes the scores into metrics.jsonl, then broadcasts whether it could;
// the other ranks wait in that broadcast. The broadcast goes round the ring
// itself, not through the stall deadlines of the step's collectives: an
// evaluation much longer than a step is not a stalled rank, and its
// duration does not enter the deadlines of the next steps. The wait is
// bounded by EvalWait, and ends sooner when rank 0 dies or a newer
// generation starts. Every rank leaves it at the same step boundary, and
// nothing of the training state changes: the evaluation reads the
// parameters through a model of its own (Trainer.Evaluate).
func (m *member) evaluate(ctx context.Context, ring *allreduce.Ring, st StepStats) error {
	start := time.Now()
	done := st.Step + 1
	var failed [1]byte
	var evalErr error
	if ring.Rank() == 0 {
		ev, err := m.t.Evaluate(ctx)
		if d := m.o.Faults.EvalDelay; d > 0 && err == nil {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		if err == nil && m.rec != nil {
			err = m.rec.evaluation(st, ev)
		}
		if err != nil {
			if ctx.Err() != nil {
				// A newer generation ended this one: not the evaluation's fault.
				return fmt.Errorf("evaluation after step %d: %w", done, err)
			}
			evalErr, failed[0] = err, 1
			m.log.Error("evaluation failed", "step", done, "err", err)
		} else {
			evaluated(m.o.Observer, done, ev)
			logEvaluation(m.log, done, ev)
		}
	}
	if ring.Size() > 1 {
		wait := m.o.EvalWait
		if wait <= 0 {
			wait = DefaultEvalWait
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		err := ring.Broadcast(wctx, failed[:], 0)
		cancel()
		if err != nil {
			return fmt.Errorf("waiting for rank 0's evaluation after step %d (at most %v): %w", done, wait, err)
		}
	}
	if failed[0] != 0 {
		why := "see rank 0's log"
		if evalErr != nil {
			why = evalErr.Error()
		}
		// Every rank stops alike, as a single process stops on it.
		return fmt.Errorf("%w: the evaluation after step %d (--eval-every %d) failed: %s",
			ErrAborted, done, m.cfg.EvalEvery, why)
	}
	took := time.Since(start)
	m.evalTime += took
	if m.rec != nil {
		m.rec.paused(took)
	}
	return nil
}

// dataTransport picks the data plane: plain TCP, which costs about two
// thirds of gRPC's CPU per byte, moved to shared memory between workers of
// one machine unless noShm, or gRPC when TLS is configured (only gRPC
// carries it).
func dataTransport(tls, noShm bool) string {
	return allreduce.ChooseTransport(tls, !noShm)
}

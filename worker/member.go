package worker

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/coordinator"
	"github.com/infonce/infonce/dataset"
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
	Observer       Observer      // nil for none
	// Backoff is the reconnection back-off towards the coordinator (zero:
	// coordinator.DefaultBackoff).
	Backoff coordinator.Backoff
}

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
	srv, err := allreduce.Listen(o.DataBind, append(o.securityOptions(), allreduce.WithLogger(log))...)
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
	m := &member{o: o, log: log, client: client, srv: srv, stop: ctx, changed: make(chan struct{}),
		joinReq: coordinator.JoinRequest{Name: o.Name, DataAddr: dataAddr, Fingerprint: o.Fingerprint}}
	joinCtx, cancelJoin := context.WithCancel(ctl)
	stopJoin := context.AfterFunc(ctx, cancelJoin)
	err = m.join(joinCtx)
	stopJoin()
	cancelJoin()
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

// member is the state of one worker across generations.
type member struct {
	o      MemberOptions
	log    *slog.Logger
	client *coordinator.Client
	srv    *allreduce.Server
	stop   context.Context // ends when the worker is asked to stop

	joinReq coordinator.JoinRequest
	gossip  *coordinator.Gossip // owned by join and control

	// The latest assignment, published by control for the training loop.
	mu        sync.Mutex
	latest    coordinator.Assignment
	latestErr error
	changed   chan struct{} // closed and replaced on every publish
	jobID     string

	// What the worker holds, for a re-join: read by control, written by
	// the training loop.
	heldStep atomic.Int64
	heldGen  atomic.Uint64
	hasState atomic.Bool
	quitting atomic.Bool // the worker is leaving the run: no more re-joins

	spec  RunSpec
	cfg   Config
	rank  int // this worker's rank in the current generation
	world int // and the generation's number of ranks
	t     *Trainer[float32]
	next  int64 // the next step to run with the state in t
	bad   int   // non-finite steps in a row, as every rank counts them
	rec   *recorder
	// shared holds the trainer's gradient where the workers of this
	// machine can read it (gradStorage); nil when it is plain memory.
	shared  *allreduce.SharedVector
	lastLog time.Time
	started time.Time

	faults  faults
	samples *sampleLog
	stepNow int64 // the step being run, for the injected faults

	last     StepStats // the last step this worker completed,
	lastGen  uint64    // in this generation
	haveLast bool
}

// join joins the run (again, when the worker already holds state) and
// starts the gossip node under the new id.
func (m *member) join(ctx context.Context) error {
	req := m.joinReq
	if gen := m.heldGen.Load(); gen > 0 {
		req.Held = &coordinator.HeldState{Step: m.heldStep.Load(), Generation: gen, JobID: m.jobIDNow()}
		if !m.hasState.Load() {
			req.Held.Step = 0
		}
	}
	id, err := m.client.Join(ctx, req)
	if err != nil {
		return fmt.Errorf("join %s: %w", m.o.Coordinator, err)
	}
	m.log.Info("joined", "worker", id, "coordinator", m.o.Coordinator, "data", req.DataAddr, "held", req.Held != nil)
	// The stream first: the coordinator declares a joined worker without
	// one dead after its WatchGrace; gossip may take a while to settle.
	if err := m.client.StartWatch(); err != nil {
		return err
	}
	m.closeGossip()
	if m.o.GossipBind != "" {
		gc := coordinator.DefaultLocalGossipConfig(id)
		if m.o.GossipLAN {
			gc = coordinator.DefaultLANGossipConfig(id)
		}
		gc.BindAddr, gc.BindPort, gc.AdvertiseAddr = m.o.GossipBind, m.o.GossipPort, m.o.GossipAdvertise
		gc.Seeds, gc.SecretKey, gc.Logger = m.client.GossipSeeds(), m.o.GossipKey, m.log
		g, err := coordinator.StartGossip(gc)
		if err != nil {
			return fmt.Errorf("gossip: %w (a node without the run's --cluster-key is not admitted)", err)
		}
		m.gossip = g
	}
	return nil
}

func (m *member) closeGossip() {
	if m.gossip != nil {
		_ = m.gossip.Close(context.Background(), 200*time.Millisecond)
		m.gossip = nil
	}
}

func (m *member) jobIDNow() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.jobID
}

// control follows the coordinator: it publishes every assignment, and when
// the coordinator no longer knows the worker it joins again, announcing
// the state the worker holds. It returns when the run stopped, ctx ended or
// the coordinator refused the worker.
func (m *member) control(ctx context.Context) {
	var after uint64
	for {
		a, err := m.client.NextAssignment(ctx, after)
		switch {
		case err == nil:
			after = a.Generation
			m.publish(a, nil)
			if a.Action == coordinator.ActionStop {
				return
			}
			continue
		case ctx.Err() != nil:
			m.publish(coordinator.Assignment{}, ctx.Err())
			return
		case errors.Is(err, coordinator.ErrUnknownWorker) && !m.quitting.Load():
			m.log.Warn("the coordinator no longer knows this worker (it restarted, or declared the worker dead); joining again",
				"err", err, "held_step", m.heldStep.Load(), "held_gen", m.heldGen.Load())
			if err := m.join(ctx); err != nil {
				m.publish(coordinator.Assignment{}, err)
				return
			}
			after = 0
			continue
		}
		m.publish(coordinator.Assignment{}, err)
		return
	}
}

// publish hands an assignment (newer than any before) or the control
// plane's final error to the training loop.
func (m *member) publish(a coordinator.Assignment, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.latestErr = err
	} else if a.Generation > m.latest.Generation {
		m.latest = a
		if a.JobID != "" {
			m.jobID = a.JobID
		}
	} else {
		return
	}
	close(m.changed)
	m.changed = make(chan struct{})
}

// nextAssignment waits for an assignment newer than after.
func (m *member) nextAssignment(ctx context.Context, after uint64) (coordinator.Assignment, error) {
	for {
		m.mu.Lock()
		a, err, changed := m.latest, m.latestErr, m.changed
		m.mu.Unlock()
		if a.Generation > after {
			return a, nil
		}
		if a.Action == coordinator.ActionStop && a.Generation != 0 {
			return coordinator.Assignment{}, fmt.Errorf("after generation %d: %w", after, coordinator.ErrRunStopped)
		}
		if err != nil {
			return coordinator.Assignment{}, err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return coordinator.Assignment{}, ctx.Err()
		}
	}
}

func (m *member) run(ctl context.Context) (*Summary, error) {
	m.started = time.Now()
	var gen uint64
	for {
		a, err := m.waitAssignment(ctl, gen)
		if err != nil {
			if errors.Is(err, ErrStopped) {
				m.quitting.Store(true)
				return nil, err
			}
			if errors.Is(err, coordinator.ErrRunStopped) {
				m.log.Info("run stopped by the coordinator")
				return nil, nil
			}
			return nil, fmt.Errorf("waiting for an assignment after generation %d: %w", gen, err)
		}
		gen = a.Generation
		m.log.Info("generation", "gen", gen, "action", a.Action, "rank", a.Rank, "world", a.World,
			"start", a.Start, "step", a.StartStep, "reason", a.Reason)
		switch a.Action {
		case coordinator.ActionStop:
			if a.CheckpointBeforeStop && m.t != nil && a.Rank == 0 {
				m.rank = 0
				if _, err := m.save(ctl, gen); err != nil {
					return nil, err
				}
			}
			return nil, nil
		case coordinator.ActionPause:
			// Keep the state; wait for the next generation. The pause
			// ranks the members still there: its rank 0 saves on a stop.
			m.rank, m.world = a.Rank, a.World
			continue
		case coordinator.ActionRun:
		default:
			return nil, fmt.Errorf("generation %d: unknown action %v", gen, a.Action)
		}
		sum, done, err := m.generation(ctl, a)
		if errors.Is(err, ErrStopped) || errors.Is(err, ErrAborted) || errors.Is(err, errFatal) {
			m.quitting.Store(true)
		}
		if err != nil {
			if errors.Is(err, ErrStopped) {
				return nil, err
			}
			if errors.Is(err, ErrAborted) {
				_ = m.client.Abort(coordinator.NoRetry(ctl), gen, m.next, err.Error())
				return nil, err
			}
			if errors.Is(err, errFatal) {
				_ = m.client.ReportError(coordinator.NoRetry(ctl), gen, m.next, err.Error(), true)
				return nil, err
			}
			m.log.Warn("generation ended", "gen", gen, "err", err)
			continue
		}
		if done {
			return sum, nil
		}
	}
}

// waitAssignment waits for the generation after gen. A stop request while
// the worker waits (paused, or between generations after a broken ring)
// ends the wait: the worker that was rank 0 of the last generation tries to
// save the state it holds, and the result is ErrStopped.
func (m *member) waitAssignment(ctl context.Context, gen uint64) (coordinator.Assignment, error) {
	wctx, cancel := context.WithCancel(ctl)
	defer cancel()
	stopWait := context.AfterFunc(m.stop, cancel)
	defer stopWait()
	a, err := m.nextAssignment(wctx, gen)
	if err == nil || m.stop.Err() == nil || ctl.Err() != nil {
		return a, err
	}
	m.log.Info("stopping on request while waiting for a generation", "after_generation", gen, "held_step", m.next)
	if m.hasState.Load() {
		// Best effort: outside a running generation the other members may
		// hold the same state and save it, and a worker that cannot write
		// the run directory must still stop as asked.
		if _, err := m.save(ctl, gen); err != nil {
			m.log.Warn("stopping without a checkpoint of the state held", "held_step", m.next, "err", err)
		}
	}
	return coordinator.Assignment{}, ErrStopped
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

	if err := m.configure(a); err != nil {
		return nil, false, fmt.Errorf("%w: %w", errFatal, err)
	}
	m.heldGen.Store(gen)
	ring, err := allreduce.NewRing(genCtx, m.srv, m.cfg.withGradWire(allreduce.Config{
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
	if err := m.startState(genCtx, ring, a); err != nil {
		return nil, false, err
	}
	m.hasState.Store(true)
	m.heldStep.Store(m.next)
	m.o.Observer.GenerationStarted(gen, ring.Rank(), ring.Size())
	return m.train(genCtx, ctl, ring, a)
}

// configure builds the trainer from the run configuration the first time.
func (m *member) configure(a coordinator.Assignment) error {
	if m.t != nil {
		return nil
	}
	spec, err := DecodeRunSpec(a.Config)
	if err != nil {
		return err
	}
	cfg := spec.Config
	if m.o.Out != "" {
		cfg.Out = m.o.Out
	} else if err := checkNetworkOut(cfg.Out, m.o.OutRoot); err != nil { // security.go
		return err
	}
	set, err := dataset.Load(cfg.Data, cfg.Classes)
	if err != nil {
		return fmt.Errorf("--data %s: %w", cfg.Data, err)
	}
	f, err := faultsFromEnv()
	if err != nil {
		return err
	}
	if path := os.Getenv(EnvSampleLog); path != "" && m.samples == nil {
		if m.samples, err = openSampleLog(path); err != nil {
			return err
		}
	}
	t, err := NewTrainerGrad[float32](cfg, set, m.gradStorage)
	if err != nil {
		return err
	}
	m.spec, m.cfg, m.t, m.next, m.faults = spec, cfg, t, 0, f
	if r, ok := m.o.Observer.(RunObserver); ok {
		r.RunConfigured(cfg, len(t.Model.P.G))
	}
	m.hook(t)
	return nil
}

// gradStorage gives the trainer its gradient buffer: a SharedVector when
// the data plane may use shared memory, so that rings of workers of this
// machine all-reduce it in place, and plain memory (nil) otherwise or when
// the vector cannot be made. A trainer built again for the same model
// reuses the vector.
func (m *member) gradStorage(n int) ([]float32, error) {
	if dataTransport(m.o.TLSClient != nil, m.o.NoSharedMemory) != allreduce.TransportSHM {
		return nil, nil
	}
	if m.shared != nil {
		if m.shared.Len() == n {
			return m.shared.Floats(), nil
		}
		return nil, nil
	}
	v, err := allreduce.NewSharedVector(n)
	if err != nil {
		m.log.Warn("the gradient stays in private memory", "err", err)
		return nil, nil
	}
	m.shared = v
	return v.Floats(), nil
}

// hook installs the injected faults and the sample log on a trainer.
func (m *member) hook(t *Trainer[float32]) {
	t.faultHook = m.faults.nanHook()
	t.gradHook = m.faults.dumpHook()
	if m.samples != nil {
		t.sampleHook = func(step int64, epoch int, local []int) {
			m.samples.write(SampleRecord{Event: "contribute", Worker: m.o.Name, Generation: m.heldGen.Load(),
				World: m.world, Rank: m.rank, Step: step, Epoch: epoch, Indices: local})
		}
	}
}

// startState brings the trainer to the generation's start state: fresh
// from the seed, a checkpoint, or a broadcast from the source rank, which
// then also fixes the step every rank resumes at.
func (m *member) startState(ctx context.Context, ring *allreduce.Ring, a coordinator.Assignment) error {
	switch a.Start.Kind {
	case coordinator.StartFresh:
		if m.next != 0 {
			t, err := NewTrainerGrad[float32](m.cfg, m.t.Set, m.gradStorage)
			if err != nil {
				return err
			}
			m.t.Close()
			m.t, m.next, m.bad = t, 0, 0
			m.hook(t)
		}
		return nil
	case coordinator.StartCheckpoint:
		if err := checkCheckpointPath(a.Start.CheckpointPath); err != nil { // security.go
			return fmt.Errorf("%w: start state: %w", errFatal, err)
		}
		c, err := checkpoint.Load(ctx, a.Start.CheckpointPath)
		if err != nil {
			return fmt.Errorf("%w: start state: %w", errFatal, err)
		}
		next, err := m.t.Restore(c)
		if err != nil {
			return fmt.Errorf("%w: start state: %w", errFatal, err)
		}
		m.next, m.bad = next, 0
		return nil
	case coordinator.StartBroadcast:
		return m.broadcastState(ctx, ring, a.Start.SourceRank)
	}
	return fmt.Errorf("%w: unknown start state %v", errFatal, a.Start)
}

// broadcastState hands the source rank's whole training state to every
// rank: first its size, then the encoded Snapshot.
func (m *member) broadcastState(ctx context.Context, ring *allreduce.Ring, root int) error {
	var payload []byte
	var header [8]byte
	if ring.Rank() == root {
		mf, blobs, err := m.t.Snapshot(m.next, ring.Generation())
		if err != nil {
			return err
		}
		// The count of non-finite steps in a row travels with the state,
		// so that every rank stops at the same step.
		mf.Extra[extraBadSteps] = fmt.Sprint(m.bad)
		if payload, err = encodeState(mf, blobs); err != nil {
			return err
		}
		binary.LittleEndian.PutUint64(header[:], uint64(len(payload)))
	}
	if err := ring.Broadcast(ctx, header[:], root); err != nil {
		return fmt.Errorf("broadcast state size: %w", err)
	}
	n := binary.LittleEndian.Uint64(header[:])
	if n > maxStateBytes {
		return fmt.Errorf("%w: broadcast state of %d bytes is over the %d limit", errFatal, n, uint64(maxStateBytes))
	}
	if ring.Rank() != root {
		payload = make([]byte, n)
	}
	if err := ring.Broadcast(ctx, payload, root); err != nil {
		return fmt.Errorf("broadcast state: %w", err)
	}
	if ring.Rank() == root {
		return nil
	}
	mf, blobs, err := decodeState(payload)
	if err != nil {
		return fmt.Errorf("%w: state from rank %d: %w", errFatal, root, err)
	}
	next, err := m.t.restore(fmt.Sprintf("rank %d", root), mf, func(name string) ([]byte, error) {
		b, ok := blobs[name]
		if !ok {
			return nil, fmt.Errorf("no blob %q", name)
		}
		return b, nil
	})
	if err != nil {
		return fmt.Errorf("%w: %w", errFatal, err)
	}
	m.next, m.bad = next, 0
	if v, ok := mf.Extra[extraBadSteps]; ok {
		if _, err := fmt.Sscan(v, &m.bad); err != nil {
			return fmt.Errorf("%w: state from rank %d: %s %q: %w", errFatal, root, extraBadSteps, v, err)
		}
	}
	return nil
}

// extraBadSteps is the manifest entry of a broadcast state that carries
// the count of non-finite steps in a row.
const extraBadSteps = "bad_steps_in_a_row"

// train runs steps until the end of the run, a graceful stop, or the end of
// the generation.
func (m *member) train(ctx, ctl context.Context, ring *allreduce.Ring, a coordinator.Assignment) (*Summary, bool, error) {
	t, gen, rank := m.t, a.Generation, ring.Rank()
	m.rank, m.world = rank, ring.Size()
	total := t.TotalSteps()
	if rank == 0 {
		if err := m.openRecorder(ring.Size()); err != nil {
			return nil, false, fmt.Errorf("%w: %w", errFatal, err)
		}
	}
	var comm Comm[float32] = ring
	if m.faults.killAllReduce >= 0 {
		comm = killComm{Ring: ring, step: &m.stepNow, atStep: m.faults.killAllReduce, delay: 200 * time.Microsecond}
	}
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
	for step := m.next; step < total; step++ {
		// Joiners are admitted at step boundaries: a newer generation
		// means this step must not start.
		if newer := rep.boundary(step); newer > gen {
			return nil, false, fmt.Errorf("generation %d is newer", newer)
		}
		if m.stop.Err() != nil {
			t.StopRequested.Store(true)
		}
		m.stepNow = step
		st, err := t.Step(ctx, comm, step)
		if errors.Is(err, ErrNonFinite) {
			// Every rank summed the same non-finite values: all skip
			// this step alike, and all count it.
			m.bad++
			m.next = step + 1
			m.heldStep.Store(m.next)
			m.samples.write(SampleRecord{Event: "skipped", Worker: m.o.Name, Generation: gen, World: ring.Size(), Rank: rank, Step: step, Epoch: st.Epoch})
			m.log.Warn("step skipped: the summed loss or gradient is not finite; the parameters are unchanged",
				"step", step, "loss", st.Loss, "bad_in_a_row", m.bad, "max_bad_steps", m.spec.MaxBadSteps)
			if m.bad >= m.spec.MaxBadSteps {
				if _, err := m.save(ctl, gen); err != nil {
					m.log.Warn("no checkpoint of the last finite state", "err", err)
				}
				return nil, false, fmt.Errorf("%w: %d non-finite steps in a row (steps %d to %d, --max-bad-steps %d): the loss or the gradients are NaN or Inf; "+
					"the parameters were never updated with them; lower --lr or --clip-norm, check the data, or resume from the last checkpoint",
					ErrAborted, m.bad, step-int64(m.bad)+1, step, m.spec.MaxBadSteps)
			}
			if st.Stop {
				return m.stopOnRequest(ctl, gen)
			}
			continue
		}
		if err != nil {
			return nil, false, err
		}
		m.bad = 0
		m.next = step + 1
		m.heldStep.Store(m.next)
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
		if time.Since(m.lastLog) > time.Second || m.next == total {
			rate := float64(local) * float64(m.next-step) / time.Since(stepStart).Seconds()
			rep.progress(coordinator.Progress{Step: m.next, Loss: st.Loss, SamplesPerSec: rate})
			m.lastLog = time.Now()
		}
		stepStart = time.Now()
		if every := int64(m.cfg.ChecksumEvery); every > 0 && m.next%every == 0 {
			if err := checkParams(ctx, ring, t.Model.P.W, m.next); err != nil {
				return nil, false, err
			}
		}
		if every := m.cfg.CheckpointEvery; every > 0 && m.next%every == 0 && m.next < total {
			if _, err := m.save(ctl, gen); err != nil {
				return nil, false, err
			}
		}
		if st.Stop {
			return m.stopOnRequest(ctl, gen)
		}
	}
	return m.finish(ctl, ring, gen)
}

// stopOnRequest ends the run after a stop request: rank 0 saves.
func (m *member) stopOnRequest(ctl context.Context, gen uint64) (*Summary, bool, error) {
	m.log.Info("stopping on request", "after_step", m.next)
	if _, err := m.save(ctl, gen); err != nil {
		return nil, false, err
	}
	return nil, false, ErrStopped
}

// ctlRetry is how long a worker goes without telling the coordinator of
// its boundaries and progress after such a report failed: a coordinator
// that is down or restarting must not be flooded.
const ctlRetry = 2 * time.Second

// boundaryEvery is the time between two Boundary reports. A worker waiting
// to join is admitted at the first boundary reported after it arrived; the
// coordinator asks for that one at once (Client.BoundaryWanted), so the
// periodic report only backs that request up. Every report wakes the
// coordinator, which on a machine whose cores all train takes a core from
// a rank, and every rank waits with that one: at 100 ms, 20 reports a
// second of two workers cost 1–2 % of their throughput (docs/BENCHMARKS.md,
// Scaling).
const boundaryEvery = time.Second

// reporter tells the coordinator, off the training loop, of the step
// boundaries this worker reaches (Boundary, every boundaryEvery and when
// the coordinator asks) and of its progress (Report, as the loop hands it
// over). The loop never waits for
// the coordinator: on a machine whose cores are all training, a round trip
// to the coordinator waits for the scheduler to run it, and every rank
// waited with the one that asked. A joiner admitted at a boundary the
// reporter announced starts a generation that the loop learns of at its
// next step (from the reporter or the control stream); a rank that had
// already begun that step finds the ring closed and stops there too.
type reporter struct {
	m      *member
	gen    uint64
	step   atomic.Int64  // the boundary reached last: before this step
	newer  atomic.Uint64 // a newer generation the coordinator named
	mu     sync.Mutex
	prog   *coordinator.Progress // to send
	kick   chan struct{}         // a progress report is waiting
	cancel context.CancelFunc
	done   chan struct{}
}

// startReporter starts the reporter of generation gen; stop ends it.
func (m *member) startReporter(ctx context.Context, gen uint64) *reporter {
	ctx, cancel := context.WithCancel(ctx)
	r := &reporter{m: m, gen: gen, kick: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	r.step.Store(-1)
	go r.run(ctx)
	return r
}

func (r *reporter) run(ctx context.Context) {
	defer close(r.done)
	tick := time.NewTicker(boundaryEvery)
	defer tick.Stop()
	var down time.Time // when a report last failed
	sent := int64(-1)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-r.kick:
		case <-r.m.client.BoundaryWanted():
			// A joiner waits for the next boundary: report it now.
		}
		if time.Since(down) < ctlRetry {
			continue
		}
		if step := r.step.Load(); step > sent {
			sent = step
			bctx, cancel := context.WithTimeout(coordinator.NoRetry(ctx), 500*time.Millisecond)
			newer, err := r.m.client.Boundary(bctx, r.gen, step)
			cancel()
			if err != nil {
				down = time.Now()
				continue
			}
			if newer > r.gen {
				r.newer.Store(newer)
			}
		}
		r.mu.Lock()
		p := r.prog
		r.prog = nil
		r.mu.Unlock()
		if p != nil {
			rctx, cancel := context.WithTimeout(coordinator.NoRetry(ctx), 500*time.Millisecond)
			err := r.m.client.Report(rctx, r.gen, *p)
			cancel()
			if err != nil {
				down = time.Now()
			}
		}
	}
}

// progress hands a progress report over; the reporter sends the newest.
func (r *reporter) progress(p coordinator.Progress) {
	r.mu.Lock()
	r.prog = &p
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// stop ends the reporter and waits for it.
func (r *reporter) stop() {
	r.cancel()
	<-r.done
}

// boundary marks the boundary before step as reached and returns the
// newest generation known there: the one the control stream delivered or
// the one the coordinator named when told of an earlier boundary.
func (r *reporter) boundary(step int64) uint64 {
	r.step.Store(step)
	r.m.mu.Lock()
	newest := r.m.latest.Generation
	r.m.mu.Unlock()
	return max(newest, r.newer.Load())
}

// save writes a checkpoint of the completed steps on rank 0 of the last
// generation and announces it to the coordinator.
func (m *member) save(ctl context.Context, gen uint64) (string, error) {
	if m.rank != 0 || m.t == nil { // only rank 0 saves
		return "", nil
	}
	dir, err := m.t.Save(ctl, m.next, gen)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errFatal, err)
	}
	cctx, cancel := context.WithTimeout(ctl, 5*time.Second)
	defer cancel()
	if err := m.client.CommitCheckpoint(cctx, gen, m.next, dir); err != nil {
		m.log.Warn("checkpoint not announced", "dir", dir, "err", err)
	}
	m.log.Info("checkpoint", "step", m.next, "dir", dir)
	m.o.Observer.CheckpointSaved(m.next, dir)
	return dir, nil
}

// finish ends the run: rank 0 saves the final checkpoint, reports the end,
// evaluates and writes summary.json; the other ranks wait for the
// coordinator's stop.
func (m *member) finish(ctl context.Context, ring *allreduce.Ring, gen uint64) (*Summary, bool, error) {
	t := m.t
	if ring.Rank() != 0 || m.rec == nil {
		// Rank 0 reports the end once its checkpoint is safe; until then
		// this rank stays a member, ready to take over if rank 0 dies.
		return nil, false, nil
	}
	// The throughput is the training's, as a single process reports it:
	// the final checkpoint and the end's round trip do not count.
	trainSeconds := time.Since(m.started).Seconds()
	samplesPerSecond := m.rec.samplesPerSecond()
	m.rec.finish()
	if _, err := m.save(ctl, gen); err != nil {
		return nil, false, err
	}
	if err := m.client.Finish(ctl, gen, m.next); err != nil {
		// The coordinator did not take the end (it restarted, or a newer
		// generation exists): stay a member and finish again in the
		// generation it opens, from this state.
		m.log.Warn("the end of training was not acknowledged; waiting for the coordinator", "err", err)
		return nil, false, nil
	}
	sum := &Summary{
		Objective: m.cfg.Objective, Data: m.cfg.Data, Workers: ring.Size(), Generation: gen,
		Steps: t.TotalSteps(), Samples: t.TotalSteps() * int64(m.cfg.Batch),
		FinalLoss: m.rec.last.Loss, FinalLogitScale: m.rec.last.LogitScale,
		SamplesPerSecond: samplesPerSecond,
		TrainSeconds:     trainSeconds,
		ParamSHA256:      ParamSHA256(t.Model.P.W),
		StepTime:         m.rec.meanStepTime(),
		Config:           m.cfg,
	}
	if m.o.Evaluate {
		start := time.Now()
		ev, err := t.Evaluate(ctl)
		if err != nil {
			return nil, false, fmt.Errorf("evaluation: %w", err)
		}
		sum.Evaluation, sum.EvalSeconds = ev, time.Since(start).Seconds()
	}
	sum.WallSeconds = time.Since(m.started).Seconds()
	sum.PeakRSSBytes = PeakRSS()
	if err := writeJSON(filepath.Join(m.cfg.Out, "summary.json"), sum); err != nil {
		return nil, false, err
	}
	return sum, true, nil
}

// openRecorder opens metrics.jsonl for the rank that records: a fresh run
// starts it anew, a run that continues appends.
func (m *member) openRecorder(workers int) error {
	if m.rec != nil {
		return nil
	}
	if err := os.MkdirAll(m.cfg.Out, 0o755); err != nil {
		return fmt.Errorf("--out %s: %w", m.cfg.Out, err)
	}
	rec, err := openRecorder(m.cfg, m.t.TotalSteps(), workers, Options{Progress: m.o.Progress}, m.next > 0, m.next)
	if err != nil {
		return err
	}
	m.rec = rec
	// A rank that becomes rank 0 after the old one died may hold a step
	// that completed on every rank but whose line died with the old
	// rank 0: write it again (the last line of a step wins).
	if m.haveLast && m.last.Step == m.next-1 {
		if err := rec.step(m.last, m.lastGen); err != nil {
			return err
		}
	}
	return nil
}

// checkParams compares a checksum of the parameters across the ranks: the
// parameters of every rank must be bit-identical after every step. The
// checksum is xxHash64, about ten times faster than SHA-256 here: it
// guards against divergence, not against an adversary.
func checkParams(ctx context.Context, ring *allreduce.Ring, w []float32, step int64) error {
	var sum [8]byte
	binary.LittleEndian.PutUint64(sum[:], xxhash.Sum64(floatBytes(w)))
	K := ring.Size()
	counts := make([]int, K)
	for i := range counts {
		counts[i] = 8
	}
	all := make([]byte, 8*K)
	if err := ring.AllGather(ctx, sum[:8], all, counts); err != nil {
		return fmt.Errorf("parameter checksum: %w", err)
	}
	for r := 0; r < K; r++ {
		if !bytes.Equal(all[8*r:8*r+8], sum[:8]) {
			return fmt.Errorf("%w: after step %d the parameters of rank %d differ from rank %d's (checksum %x, here %x): the ranks diverged; restart from the last checkpoint",
				errFatal, step, r, ring.Rank(), all[8*r:8*r+8], sum[:8])
		}
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

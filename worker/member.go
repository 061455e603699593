package worker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

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

	Out       string        // overrides the run configuration's output directory
	Progress  io.Writer     // rank 0's progress line; nil for none
	Logger    *slog.Logger  // nil: slog.Default()
	Evaluate  bool          // rank 0 evaluates at the end
	OpTimeout time.Duration // deadline of one collective (0: allreduce's default)
	Observer  Observer      // nil for none
}

// RunMember joins the run of the coordinator and trains until the run ends:
// it takes every generation the coordinator assigns (rank, ring, start
// state), builds the ring over one long-lived data-plane listener, and runs
// the steps. A failed collective or a newer generation ends the current
// generation; the worker then waits for the next one. When ctx ends, the
// worker asks every rank to stop after the current step; rank 0 saves a
// checkpoint, and the worker leaves. Rank 0 writes metrics.jsonl and, at
// the end, the final checkpoint, the evaluation and summary.json.
func RunMember(ctx context.Context, o MemberOptions) (*Summary, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	srv, err := allreduce.Listen(o.DataBind, allreduce.WithLogger(log))
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
	client, err := coordinator.Dial(ctl, o.Coordinator, o.Token, coordinator.WithClientLogger(log))
	if err != nil {
		return nil, err
	}
	defer client.Close()
	joinCtx, cancelJoin := context.WithCancel(ctl)
	stopJoin := context.AfterFunc(ctx, cancelJoin)
	id, err := client.Join(joinCtx, coordinator.JoinRequest{Name: o.Name, DataAddr: dataAddr})
	stopJoin()
	cancelJoin()
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", o.Coordinator, err)
	}
	log = log.With("worker", id)
	log.Info("joined", "coordinator", o.Coordinator, "data", dataAddr)
	if o.GossipBind != "" {
		gc := coordinator.DefaultLocalGossipConfig(id)
		if o.GossipLAN {
			gc = coordinator.DefaultLANGossipConfig(id)
		}
		gc.BindAddr, gc.BindPort, gc.AdvertiseAddr = o.GossipBind, o.GossipPort, o.GossipAdvertise
		gc.Seeds, gc.SecretKey, gc.Logger = client.GossipSeeds(), o.GossipKey, log
		g, err := coordinator.StartGossip(gc)
		if err != nil {
			return nil, fmt.Errorf("gossip: %w", err)
		}
		defer g.Close(context.Background(), time.Second)
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	m := &member{o: o, log: log, client: client, srv: srv, stop: ctx}
	sum, err := m.run(ctl)
	if m.t != nil {
		m.t.Close()
	}
	if m.rec != nil {
		m.rec.close()
	}
	leaveCtx, cancel := context.WithTimeout(ctl, 2*time.Second)
	defer cancel()
	_ = client.Leave(leaveCtx, "done")
	return sum, err
}

// member is the state of one worker across generations.
type member struct {
	o      MemberOptions
	log    *slog.Logger
	client *coordinator.Client
	srv    *allreduce.Server
	stop   context.Context // ends when the worker is asked to stop

	cfg     Config
	rank    int // this worker's rank in the current generation
	t       *Trainer[float32]
	next    int64 // the next step to run with the state in t
	rec     *recorder
	lastLog time.Time
	started time.Time
}

func (m *member) run(ctl context.Context) (*Summary, error) {
	m.started = time.Now()
	var gen uint64
	for {
		a, err := m.client.NextAssignment(ctl, gen)
		if err != nil {
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
			if a.CheckpointBeforeStop && m.t != nil {
				if _, err := m.save(ctl, gen); err != nil {
					return nil, err
				}
			}
			return nil, nil
		case coordinator.ActionPause:
			continue // keep the state; wait for the next generation
		case coordinator.ActionRun:
		default:
			return nil, fmt.Errorf("generation %d: unknown action %v", gen, a.Action)
		}
		sum, done, err := m.generation(ctl, a)
		if err != nil {
			if errors.Is(err, ErrStopped) {
				return nil, err
			}
			if errors.Is(err, ErrNonFinite) || errors.Is(err, errFatal) {
				_ = m.client.ReportError(ctl, gen, m.next, err.Error(), true)
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
		if _, err := m.client.NextAssignment(genCtx, gen); err == nil || !errors.Is(err, context.Canceled) {
			cancel()
		}
	}()
	defer watch.Wait()
	defer cancel()

	if err := m.configure(a); err != nil {
		return nil, false, fmt.Errorf("%w: %w", errFatal, err)
	}
	ring, err := allreduce.NewRing(genCtx, m.srv, allreduce.Config{
		JobID: a.JobID, Generation: gen, Rank: a.Rank, Peers: a.Peers, Timeout: m.o.OpTimeout,
		Logger: m.log,
	})
	if err != nil {
		return nil, false, fmt.Errorf("ring of generation %d: %w", gen, err)
	}
	defer ring.Close()
	if err := m.startState(genCtx, ring, a); err != nil {
		return nil, false, err
	}
	m.o.Observer.GenerationStarted(gen, ring.Rank(), ring.Size())
	return m.train(genCtx, ctl, ring, a)
}

// configure builds the trainer from the run configuration the first time.
func (m *member) configure(a coordinator.Assignment) error {
	if m.t != nil {
		return nil
	}
	var cfg Config
	if err := json.Unmarshal(a.Config, &cfg); err != nil {
		return fmt.Errorf("run configuration from the coordinator: %w", err)
	}
	if m.o.Out != "" {
		cfg.Out = m.o.Out
	}
	set, err := dataset.Load(cfg.Data, cfg.Classes)
	if err != nil {
		return fmt.Errorf("--data %s: %w", cfg.Data, err)
	}
	t, err := NewTrainer[float32](cfg, set)
	if err != nil {
		return err
	}
	m.cfg, m.t, m.next = cfg, t, 0
	return nil
}

// startState brings the trainer to the generation's start state: fresh
// from the seed, a checkpoint, or a broadcast from the source rank, which
// then also fixes the step every rank resumes at.
func (m *member) startState(ctx context.Context, ring *allreduce.Ring, a coordinator.Assignment) error {
	switch a.Start.Kind {
	case coordinator.StartFresh:
		if m.next != 0 {
			t, err := NewTrainer[float32](m.cfg, m.t.Set)
			if err != nil {
				return err
			}
			m.t.Close()
			m.t, m.next = t, 0
		}
		return nil
	case coordinator.StartCheckpoint:
		c, err := checkpoint.Load(ctx, a.Start.CheckpointPath)
		if err != nil {
			return fmt.Errorf("%w: start state: %w", errFatal, err)
		}
		next, err := m.t.Restore(c)
		if err != nil {
			return fmt.Errorf("%w: start state: %w", errFatal, err)
		}
		m.next = next
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
	m.next = next
	return nil
}

// train runs steps until the end of the run, a graceful stop, or the end of
// the generation.
func (m *member) train(ctx, ctl context.Context, ring *allreduce.Ring, a coordinator.Assignment) (*Summary, bool, error) {
	t, gen, rank := m.t, a.Generation, ring.Rank()
	m.rank = rank
	total := t.TotalSteps()
	if rank == 0 {
		if err := m.openRecorder(ring.Size()); err != nil {
			return nil, false, fmt.Errorf("%w: %w", errFatal, err)
		}
	}
	local := func() int { lo, hi := dataset.Shard(m.cfg.Batch, ring.Size(), rank); return hi - lo }()
	stepStart := time.Now()
	for step := m.next; step < total; step++ {
		// Joiners are admitted at step boundaries: a newer generation
		// means this step must not start.
		bctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		newer, err := m.client.Boundary(bctx, gen, step)
		cancel()
		if err == nil && newer > gen {
			return nil, false, fmt.Errorf("generation %d is newer", newer)
		}
		if m.stop.Err() != nil {
			t.StopRequested.Store(true)
		}
		st, err := t.Step(ctx, ring, step)
		if err != nil {
			return nil, false, err
		}
		m.next = step + 1
		m.o.Observer.StepDone(st, gen, rank, ring.Size())
		if m.rec != nil && rank == 0 {
			m.rec.workers = ring.Size()
			if err := m.rec.step(st, gen); err != nil {
				return nil, false, fmt.Errorf("%w: %w", errFatal, err)
			}
		}
		if time.Since(m.lastLog) > time.Second || m.next == total {
			rate := float64(local) * float64(m.next-step) / time.Since(stepStart).Seconds()
			_ = m.client.Report(ctx, gen, coordinator.Progress{Step: m.next, Loss: st.Loss, SamplesPerSec: rate})
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
			m.log.Info("stopping on request", "after_step", m.next)
			if _, err := m.save(ctl, gen); err != nil {
				return nil, false, err
			}
			return nil, false, ErrStopped
		}
	}
	return m.finish(ctl, ring, gen)
}

// save writes a checkpoint of the completed steps on rank 0 of the last
// generation and announces it to the coordinator.
func (m *member) save(ctl context.Context, gen uint64) (string, error) {
	if m.rank != 0 || m.rec == nil { // only rank 0, which records, saves
		return "", nil
	}
	dir, err := m.t.Save(ctl, m.next, gen)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errFatal, err)
	}
	if err := m.client.CommitCheckpoint(ctl, gen, m.next, dir); err != nil {
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
	trainSeconds := time.Since(m.started).Seconds()
	m.rec.finish()
	if _, err := m.save(ctl, gen); err != nil {
		return nil, false, err
	}
	_ = m.client.Finish(ctl, gen, m.next)
	sum := &Summary{
		Objective: m.cfg.Objective, Data: m.cfg.Data, Workers: ring.Size(), Generation: gen,
		Steps: t.TotalSteps(), Samples: t.TotalSteps() * int64(m.cfg.Batch),
		FinalLoss: m.rec.last.Loss, FinalLogitScale: m.rec.last.LogitScale,
		SamplesPerSecond: m.rec.samplesPerSecond(),
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
	return nil
}

// checkParams compares a checksum of the parameters across the ranks: the
// parameters of every rank must be bit-identical after every step.
func checkParams(ctx context.Context, ring *allreduce.Ring, w []float32, step int64) error {
	sum := sha256.Sum256(floatBytes(w))
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

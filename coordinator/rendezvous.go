package coordinator

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// Phase is the phase of a run as the rendezvous machine sees it.
type Phase int

const (
	// PhaseWaiting: gathering MinWorkers (up to MaxWorkers) before the
	// first generation.
	PhaseWaiting Phase = iota + 1
	// PhaseRunning: a generation is training.
	PhaseRunning
	// PhasePaused: fewer than MinWorkers remain; waiting up to
	// RendezvousTimeout for replacements.
	PhasePaused
	// PhaseStopped: the run is over.
	PhaseStopped
)

func (p Phase) String() string {
	switch p {
	case PhaseWaiting:
		return "waiting"
	case PhaseRunning:
		return "running"
	case PhasePaused:
		return "paused"
	case PhaseStopped:
		return "stopped"
	}
	return fmt.Sprintf("Phase(%d)", int(p))
}

// MemberState is the state of one worker in the run.
type MemberState int

const (
	// MemberPending: admitted, waiting for a place in a generation.
	MemberPending MemberState = iota + 1
	// MemberActive: holds a rank in the current generation.
	MemberActive
	// MemberLeft: left on its own.
	MemberLeft
	// MemberDead: declared dead (gossip, broken stream, fatal error).
	MemberDead
)

func (s MemberState) String() string {
	switch s {
	case MemberPending:
		return "pending"
	case MemberActive:
		return "active"
	case MemberLeft:
		return "left"
	case MemberDead:
		return "dead"
	}
	return fmt.Sprintf("MemberState(%d)", int(s))
}

// Errors returned by the rendezvous machine. Test with errors.Is.
var (
	ErrUnknownWorker = errors.New("unknown worker: it never joined this run or was removed from it; join again")
	ErrRunStopped    = errors.New("the run is stopped")
	ErrNotAssigned   = errors.New("worker has no generation yet")
	// ErrStaleGeneration refuses a report that only the current
	// generation may make (the end of training) from an older one: the
	// worker takes the newer assignment and goes on from there.
	ErrStaleGeneration = errors.New("stale generation")

	ErrBadRequest = errors.New("malformed request")
)

// RendezvousConfig configures the rendezvous machine. All durations are
// measured on the times passed to the machine's methods.
type RendezvousConfig struct {
	JobID      string
	MinWorkers int
	MaxWorkers int
	// JoinTimeout bounds the wait for MinWorkers before the first
	// generation, counted from the machine's creation. Zero waits forever.
	JoinTimeout time.Duration
	// JoinSettle is how long the machine keeps collecting workers (up to
	// MaxWorkers) once MinWorkers have joined, before the first generation.
	JoinSettle time.Duration
	// RendezvousTimeout bounds a pause: when no replacements bring the
	// run back to MinWorkers within it, the run stops. Zero waits forever.
	RendezvousTimeout time.Duration
	// RunConfig is handed to every worker in its assignment.
	RunConfig []byte
	// Fingerprint is the run's; when empty the first worker's is taken.
	Fingerprint Fingerprint
	// Resume, when set, is the checkpoint the run starts from when no
	// worker holds a newer state.
	Resume *Checkpoint
	// HistoryLimit caps the generations and departed members kept for
	// Status (0: 64).
	HistoryLimit int
	// WatchGrace is how long a joined worker may be without an open
	// Watch stream (WatchOpened, WatchClosed) before Tick declares it
	// dead. Zero: never.
	WatchGrace time.Duration
	// IDPrefix starts every worker id, followed by the join number (empty:
	// "w"). A coordinator that may restart gives each incarnation its own
	// prefix, so that ids (which are also gossip node names) of one
	// incarnation never collide with those of the last.
	IDPrefix string
}

func (c RendezvousConfig) validate() error {
	if c.MinWorkers < 1 {
		return fmt.Errorf("MinWorkers = %d: need at least 1", c.MinWorkers)
	}
	if c.MaxWorkers < c.MinWorkers {
		return fmt.Errorf("MaxWorkers = %d is below MinWorkers = %d", c.MaxWorkers, c.MinWorkers)
	}
	if c.JoinTimeout < 0 || c.JoinSettle < 0 || c.RendezvousTimeout < 0 || c.WatchGrace < 0 {
		return fmt.Errorf("negative timeout (JoinTimeout %v, JoinSettle %v, RendezvousTimeout %v, WatchGrace %v)",
			c.JoinTimeout, c.JoinSettle, c.RendezvousTimeout, c.WatchGrace)
	}
	return nil
}

// Generation is one decision of the machine: who is in the run, in which
// ring order, what to do and from which state.
type Generation struct {
	Number uint64
	Action Action
	// Members are the worker ids in rank (ring) order.
	Members []string
	// Peers are their data-plane addresses in the same order.
	Peers                []string
	Start                State
	StartStep            int64
	Reason               string
	CheckpointBeforeStop bool
	At                   time.Time
}

// member is the machine's record of one worker.
type member struct {
	id          string
	seq         uint64 // join order
	req         JoinRequest
	state       MemberState
	joinedAt    time.Time
	leftAt      time.Time
	reason      string // why it left or died
	held        *HeldState
	step        int64 // latest completed steps it reported
	progress    Progress
	progressGen uint64
	progressAt  time.Time
	lastErr     string
	// hasState: the worker holds the run's state in memory, so that it
	// can start a generation by broadcast. A member of a generation
	// started afresh or from a checkpoint loads it itself; one that joined
	// a generation started by broadcast holds it once that generation ran
	// a step (a boundary or progress report of it: every rank of a ring
	// takes part in each step); a worker that joins again holding state
	// says so.
	hasState bool
}

// Rendezvous is the pure decision logic of the coordinator: membership,
// ranks, ring order, generations and the state each generation starts
// from. It does no I/O and reads no clock; every method takes the current
// time. It is not safe for concurrent use.
type Rendezvous struct {
	cfg     RendezvousConfig
	created time.Time
	phase   Phase
	fp      Fingerprint

	members map[string]*member
	nextSeq uint64
	// ring is the current generation's member ids in rank order.
	ring []string
	// pending are admitted workers without a rank, in join order.
	pending []string

	gens    []Generation // most recent last, capped
	current Generation   // the latest decision (Number 0: none yet)

	settleAt  time.Time // PhaseWaiting: when MinWorkers reached
	pausedAt  time.Time // PhasePaused
	departed  []*member // left or dead, most recent last, capped
	latestCkp *Checkpoint
	// genFloor is the newest generation any worker reported having run
	// (HeldState); new generations are numbered above it, because a
	// worker's data plane refuses a generation older than one it ran.
	genFloor uint64
	// asks counts the times a joiner arrived that the running ring has
	// room for: each asks the ring's workers for their next step boundary
	// at once (BoundaryAsks), since a joiner is admitted only there.
	asks uint64
	// finished is the step a worker of the running ring reported
	// finishing the training at (Finish); finishedOK says there was one.
	finished   int64
	finishedOK bool
	// streams counts the open Watch streams per worker; unwatched holds
	// the present workers without one, and since when.
	streams   map[string]int
	unwatched map[string]time.Time
}

// Finished returns the step at which a worker reported the training done,
// and whether one did: a run that stopped after it is complete, whatever
// happened to other workers.
func (r *Rendezvous) Finished() (step int64, ok bool) { return r.finished, r.finishedOK }

// NewRendezvous returns a machine in PhaseWaiting, created at now.
func NewRendezvous(cfg RendezvousConfig, now time.Time) (*Rendezvous, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("rendezvous config: %w", err)
	}
	if cfg.HistoryLimit <= 0 {
		cfg.HistoryLimit = 64
	}
	if cfg.IDPrefix == "" {
		cfg.IDPrefix = "w"
	}
	r := &Rendezvous{
		cfg:     cfg,
		created: now,
		phase:   PhaseWaiting,
		fp:      cfg.Fingerprint.clone(),
		members: make(map[string]*member),

		streams:   make(map[string]int),
		unwatched: make(map[string]time.Time),
	}
	if cfg.Resume != nil {
		c := *cfg.Resume
		r.latestCkp = &c
	}
	return r, nil
}

// Phase returns the current phase.
func (r *Rendezvous) Phase() Phase { return r.phase }

// Current returns the latest generation; ok is false before the first.
func (r *Rendezvous) Current() (g Generation, ok bool) {
	return r.current.clone(), r.current.Number != 0
}

// LatestCheckpoint returns the newest committed checkpoint, if any.
func (r *Rendezvous) LatestCheckpoint() (Checkpoint, bool) {
	if r.latestCkp == nil {
		return Checkpoint{}, false
	}
	return *r.latestCkp, true
}

// Join admits a worker and returns its id. A worker whose fingerprint
// differs from the run's is refused with a *FingerprintMismatchError; a
// worker without a fingerprint takes the run's configuration. A worker that
// holds state of another job is refused. In PhaseWaiting and PhasePaused
// the join may open a generation at once; in PhaseRunning the worker waits
// for the next step boundary.
func (r *Rendezvous) Join(now time.Time, req JoinRequest) (string, error) {
	if r.phase == PhaseStopped {
		return "", fmt.Errorf("join refused: %w", ErrRunStopped)
	}
	if req.DataAddr == "" {
		return "", fmt.Errorf("join refused: %w: empty data-plane address", ErrBadRequest)
	}
	if _, _, err := net.SplitHostPort(req.DataAddr); err != nil {
		return "", fmt.Errorf("join refused: %w: data-plane address %q is not host:port: %v", ErrBadRequest, req.DataAddr, err)
	}
	if h := req.Held; h != nil {
		if h.Step < 0 {
			return "", fmt.Errorf("join refused: %w: held state at negative step %d", ErrBadRequest, h.Step)
		}
		if h.Generation > MaxGeneration {
			// New generations are numbered above every held one: a
			// held generation near 2^64 would wrap the next to 0, which
			// every worker refuses as stale.
			return "", fmt.Errorf("join refused: %w: held generation %d is beyond %d, no generation can follow it", ErrBadRequest, h.Generation, uint64(MaxGeneration))
		}
		if h.JobID != r.cfg.JobID {
			return "", fmt.Errorf("join refused: %w: the worker holds the state of job %q, this is job %q: restart the worker to join this job",
				ErrBadRequest, h.JobID, r.cfg.JobID)
		}
	}
	switch {
	case len(req.Fingerprint) == 0:
		// No configuration of its own: the worker trains the run's.
	case len(r.fp) == 0:
		r.fp = req.Fingerprint.clone()
	default:
		if diffs := r.fp.Diff(req.Fingerprint); len(diffs) > 0 {
			return "", &FingerprintMismatchError{Diffs: diffs}
		}
	}
	r.nextSeq++
	id := fmt.Sprintf("%s%d", r.cfg.IDPrefix, r.nextSeq)
	req.Fingerprint = req.Fingerprint.clone()
	m := &member{id: id, seq: r.nextSeq, req: req, state: MemberPending, joinedAt: now}
	if req.Held != nil {
		h := *req.Held
		m.held, m.req.Held = &h, &h
		m.step = h.Step
		m.hasState = h.Step > 0
		r.genFloor = max(r.genFloor, h.Generation)
	}
	r.members[id] = m
	r.pending = append(r.pending, id)
	// The worker opens its Watch stream next; until then it is unwatched.
	r.unwatched[id] = now

	switch r.phase {
	case PhaseWaiting:
		r.evalWaiting(now)
	case PhasePaused:
		r.evalPaused(now)
	case PhaseRunning:
		if len(r.ring) < r.cfg.MaxWorkers {
			r.asks++
		}
	}
	return id, nil
}

// BoundaryAsks counts the requests for a step boundary made so far: when
// it grows, the running ring's workers should report their next boundary
// now rather than at their next periodic report, for a joiner waits to be
// admitted there.
func (r *Rendezvous) BoundaryAsks() uint64 { return r.asks }

// Leave removes a worker that leaves on its own.
func (r *Rendezvous) Leave(now time.Time, id, reason string) error {
	return r.remove(now, id, MemberLeft, reason)
}

// Dead removes a worker declared dead (by gossip, a broken stream or a
// fatal error).
func (r *Rendezvous) Dead(now time.Time, id, reason string) error {
	return r.remove(now, id, MemberDead, reason)
}

func (r *Rendezvous) remove(now time.Time, id string, state MemberState, reason string) error {
	m, ok := r.members[id]
	if !ok {
		return fmt.Errorf("remove %s: %w", id, ErrUnknownWorker)
	}
	wasActive := m.state == MemberActive
	m.state = state
	m.leftAt = now
	m.reason = reason
	delete(r.members, id)
	delete(r.unwatched, id)
	r.pending = without(r.pending, id)
	r.departed = append(r.departed, m)
	if len(r.departed) > r.cfg.HistoryLimit {
		r.departed = r.departed[len(r.departed)-r.cfg.HistoryLimit:]
	}
	verb := "left"
	if state == MemberDead {
		verb = "dead"
	}
	why := fmt.Sprintf("%s %s", id, verb)
	if reason != "" {
		why += " (" + reason + ")"
	}

	switch r.phase {
	case PhaseWaiting:
		r.evalWaiting(now)
	case PhaseRunning:
		if wasActive {
			r.regroup(now, id, why)
		}
	case PhasePaused:
		if wasActive {
			r.regroup(now, id, why)
		}
	case PhaseStopped:
		// Draining: nothing to decide.
		r.ring = without(r.ring, id)
	}
	return nil
}

// Boundary records that worker id of generation gen reached the boundary
// before step (step optimizer steps completed). Workers waiting for a place
// are admitted only here, so that the survivors' state is whole.
func (r *Rendezvous) Boundary(now time.Time, id string, gen uint64, step int64) error {
	m, err := r.reporter(id, step)
	if err != nil {
		return fmt.Errorf("boundary: %w", err)
	}
	if gen != r.current.Number || m.state != MemberActive {
		return nil // stale: decisions only follow the current generation
	}
	r.ringHoldsState()
	if step > m.step {
		m.step = step
	}
	if r.phase != PhaseRunning || len(r.pending) == 0 || len(r.ring) >= r.cfg.MaxWorkers {
		return nil
	}
	admitted := r.admit()
	r.open(now, ActionRun, State{Kind: StartBroadcast, SourceRank: 0}, step,
		fmt.Sprintf("admitted %s at the boundary before step %d", strings.Join(admitted, ", "), step))
	return nil
}

// Progress records a worker's progress report.
func (r *Rendezvous) Progress(now time.Time, id string, gen uint64, p Progress) error {
	m, err := r.reporter(id, p.Step)
	if err != nil {
		return fmt.Errorf("progress: %w", err)
	}
	m.progress = p
	m.progressGen = gen
	m.progressAt = now
	if gen == r.current.Number && m.state == MemberActive {
		r.ringHoldsState()
		m.step = max(m.step, p.Step)
	}
	return nil
}

// Fail records an error reported by a worker. A fatal error removes the
// worker from the run, as if it had died; a non-fatal one from a member
// of the running generation says that its ring failed, and starts a new
// generation of the same members. An abort is an error of the run
// itself, which every rank meets at the same step (for example too many
// non-finite steps in a row): the run stops, without a checkpoint (the
// reporting rank saves one before it reports, when it can).
func (r *Rendezvous) Fail(now time.Time, id string, gen uint64, step int64, msg string, fatal, abort bool) error {
	m, err := r.reporter(id, step)
	if err != nil {
		return fmt.Errorf("error report: %w", err)
	}
	m.lastErr = msg
	if abort {
		if r.phase != PhaseStopped {
			r.stop(now, fmt.Sprintf(abortedPrefix+"%s at step %d: %s", id, step, msg), false)
		}
		return nil
	}
	if fatal {
		return r.remove(now, id, MemberDead, "fatal error: "+msg)
	}
	// A member of the running generation whose ring broke while no member
	// was declared lost (a stall that outlasted the data plane's deadline
	// but not the failure detectors', a link that failed alone): every
	// member is still here, so the ring starts again with them all, from
	// the lowest rank's state. Reports of older generations are late.
	if r.phase == PhaseRunning && gen == r.current.Number && r.current.Action == ActionRun && m.state == MemberActive {
		r.regroup(now, "", fmt.Sprintf("the ring of generation %d failed with every member present (reported by %s: %s)", gen, id, msg))
	}
	return nil
}

// Finish records that a worker of the current generation completed the
// training at step; the run stops.
func (r *Rendezvous) Finish(now time.Time, id string, gen uint64, step int64) error {
	m, err := r.reporter(id, step)
	if err != nil {
		return fmt.Errorf("finish: %w", err)
	}
	if r.phase == PhaseStopped {
		return nil // already over
	}
	if gen != r.current.Number || m.state != MemberActive || r.phase != PhaseRunning {
		return fmt.Errorf("finish at step %d: %w: the worker reports generation %d, the run is at generation %d (%s)",
			step, ErrStaleGeneration, gen, r.current.Number, r.phase)
	}
	if step > m.step {
		m.step = step
	}
	r.finished, r.finishedOK = step, true
	r.stop(now, fmt.Sprintf("training finished at step %d (reported by %s)", step, id), false)
	return nil
}

// CommitCheckpoint records a checkpoint saved by a worker. The newest one
// (by step) is where a run restarts when no worker holds its state.
func (r *Rendezvous) CommitCheckpoint(now time.Time, id string, gen uint64, step int64, path string) error {
	if _, err := r.reporter(id, step); err != nil {
		return fmt.Errorf("commit checkpoint: %w", err)
	}
	if path == "" {
		return fmt.Errorf("commit checkpoint: %w: empty path", ErrBadRequest)
	}
	if r.latestCkp == nil || step >= r.latestCkp.Step {
		r.latestCkp = &Checkpoint{Step: step, Path: path, Generation: gen, By: id, At: now}
	}
	return nil
}

func (r *Rendezvous) reporter(id string, step int64) (*member, error) {
	m, ok := r.members[id]
	if !ok {
		return nil, fmt.Errorf("%s: %w", id, ErrUnknownWorker)
	}
	if step < 0 {
		return nil, fmt.Errorf("%w: negative step %d", ErrBadRequest, step)
	}
	return m, nil
}

// Tick applies the timeouts that have expired at now: the phase's, then
// WatchGrace. It returns the workers it declared dead for a missing Watch
// stream, in the order it removed them: the one whose grace ended first
// first, and workers whose grace ended at the same instant in join order,
// so that the generations their removals open do not depend on a map's
// order.
func (r *Rendezvous) Tick(now time.Time) []Unwatched {
	switch r.phase {
	case PhaseWaiting:
		r.evalWaiting(now)
	case PhasePaused:
		r.evalPaused(now)
	}
	if r.cfg.WatchGrace <= 0 {
		return nil
	}
	var expired []Unwatched
	for id, since := range r.unwatched {
		m, ok := r.members[id]
		if ok && !now.Before(since.Add(r.cfg.WatchGrace)) {
			expired = append(expired, Unwatched{ID: id, Since: since, seq: m.seq})
		}
	}
	slices.SortFunc(expired, func(a, b Unwatched) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	var dead []Unwatched
	for _, u := range expired {
		// A stopped run leaves its workers' streams alone: a stopped
		// worker closes its stream.
		if r.phase == PhaseStopped || !r.Present(u.ID) {
			continue
		}
		u.For = now.Sub(u.Since)
		_ = r.remove(now, u.ID, MemberDead, fmt.Sprintf("no Watch stream for %v", r.cfg.WatchGrace))
		dead = append(dead, u)
	}
	return dead
}

// Unwatched is a worker that Tick declared dead because it had no open
// Watch stream for WatchGrace.
type Unwatched struct {
	ID    string
	Since time.Time     // when its last stream closed, or it joined
	For   time.Duration // how long it had been without one
	seq   uint64
}

// WatchOpened records that worker id opened a Watch stream.
func (r *Rendezvous) WatchOpened(id string) error {
	if !r.Present(id) {
		return fmt.Errorf("watch %s: %w", id, ErrUnknownWorker)
	}
	r.streams[id]++
	delete(r.unwatched, id)
	return nil
}

// WatchClosed records that a Watch stream of worker id closed at now. When
// it was the worker's last one and the worker is still in the run, its
// WatchGrace starts, and WatchClosed reports true.
func (r *Rendezvous) WatchClosed(now time.Time, id string) bool {
	if r.streams[id] > 1 {
		r.streams[id]--
		return false
	}
	delete(r.streams, id)
	if !r.Present(id) {
		return false
	}
	r.unwatched[id] = now
	return true
}

// NextDeadline returns the next time at which Tick may decide something.
func (r *Rendezvous) NextDeadline() (time.Time, bool) {
	d, ok := r.phaseDeadline()
	// Tick leaves a missing Watch stream alone once the run has stopped,
	// so its grace is no deadline then: one that passed would make a
	// caller that waits for it spin.
	if r.cfg.WatchGrace > 0 && r.phase != PhaseStopped {
		for _, since := range r.unwatched {
			if t := since.Add(r.cfg.WatchGrace); !ok || t.Before(d) {
				d, ok = t, true
			}
		}
	}
	return d, ok
}

// phaseDeadline is the phase's next timeout.
func (r *Rendezvous) phaseDeadline() (time.Time, bool) {
	switch r.phase {
	case PhaseWaiting:
		var d time.Time
		if !r.settleAt.IsZero() {
			d = r.settleAt.Add(r.cfg.JoinSettle)
		}
		if r.cfg.JoinTimeout > 0 {
			t := r.created.Add(r.cfg.JoinTimeout)
			if d.IsZero() || t.Before(d) {
				d = t
			}
		}
		return d, !d.IsZero()
	case PhasePaused:
		if r.cfg.RendezvousTimeout > 0 {
			return r.pausedAt.Add(r.cfg.RendezvousTimeout), true
		}
	}
	return time.Time{}, false
}

// evalWaiting opens the first generation when enough workers have joined,
// or stops the run when JoinTimeout expired first.
func (r *Rendezvous) evalWaiting(now time.Time) {
	n := len(r.pending)
	if n < r.cfg.MinWorkers {
		r.settleAt = time.Time{}
		if r.cfg.JoinTimeout > 0 && !now.Before(r.created.Add(r.cfg.JoinTimeout)) {
			r.stop(now, fmt.Sprintf("only %d of MinWorkers=%d workers joined within JoinTimeout %v",
				n, r.cfg.MinWorkers, r.cfg.JoinTimeout), false)
		}
		return
	}
	if r.settleAt.IsZero() {
		r.settleAt = now
	}
	if n < r.cfg.MaxWorkers && now.Before(r.settleAt.Add(r.cfg.JoinSettle)) {
		return
	}
	r.admit()
	start, step := r.restartState()
	r.open(now, ActionRun, start, step, fmt.Sprintf("first generation with %d workers", len(r.ring)))
}

// evalPaused resumes the run when replacements brought it back to
// MinWorkers, or stops it when RendezvousTimeout expired.
func (r *Rendezvous) evalPaused(now time.Time) {
	if len(r.ring)+len(r.pending) >= r.cfg.MinWorkers {
		start, step, admitted := r.regroupState()
		r.open(now, ActionRun, start, step, "resumed with "+strings.Join(admitted, ", "))
		return
	}
	if r.cfg.RendezvousTimeout > 0 && !now.Before(r.pausedAt.Add(r.cfg.RendezvousTimeout)) {
		r.stop(now, fmt.Sprintf("only %d of MinWorkers=%d workers within RendezvousTimeout %v: checkpoint and stop",
			len(r.ring), r.cfg.MinWorkers, r.cfg.RendezvousTimeout), len(r.ring) > 0)
	}
}

// regroup follows the loss of an active member: the survivors keep their
// relative order, waiting workers are appended, and the lowest surviving
// rank (new rank 0) broadcasts its state. Too few workers pause the run.
func (r *Rendezvous) regroup(now time.Time, gone, why string) {
	r.ring = without(r.ring, gone)
	if len(r.ring)+len(r.pending) < r.cfg.MinWorkers {
		if r.phase != PhasePaused {
			r.pausedAt = now
			r.phase = PhasePaused
		}
		start, step := r.survivorState()
		r.open(now, ActionPause, start, step,
			fmt.Sprintf("%s: %d of MinWorkers=%d workers remain, waiting up to %v for replacements",
				why, len(r.ring), r.cfg.MinWorkers, r.cfg.RendezvousTimeout))
		return
	}
	start, step, admitted := r.regroupState()
	reason := why
	if len(admitted) > 0 {
		reason += "; admitted " + strings.Join(admitted, ", ")
	}
	r.open(now, ActionRun, start, step, reason)
}

// regroupState admits the waiting workers and returns the state the next
// generation starts from: the survivors' (survivorState) when the ring
// still holds any, else what restartState finds among the new ring.
func (r *Rendezvous) regroupState() (State, int64, []string) {
	if len(r.ring) > 0 {
		start, step := r.survivorState()
		return start, step, r.admit()
	}
	admitted := r.admit()
	start, step := r.restartState()
	return start, step, admitted
}

// survivorState is the state a new generation starts from: a broadcast
// from the lowest surviving rank when one survives (rank 0 of the new
// ring, since survivors come first in their old order), else the latest
// checkpoint, else fresh. It must be called before admit.
//
// Only a survivor known to hold the state (hasState) can be the source: a
// worker admitted by broadcast whose start never completed (the source
// died during it) holds nothing, and broadcasting its fresh parameters
// would set the run back to step 0. Without such a survivor the state is
// restartState's.
func (r *Rendezvous) survivorState() (State, int64) {
	for i, id := range r.ring {
		src := r.members[id]
		if !src.hasState {
			continue
		}
		return State{Kind: StartBroadcast, SourceRank: i}, max(r.current.StartStep, src.step)
	}
	return r.restartState()
}

// ringHoldsState records that every member of the current ring holds the
// state: the generation ran a step.
func (r *Rendezvous) ringHoldsState() {
	if r.current.Action != ActionRun {
		return
	}
	for _, id := range r.ring {
		if m := r.members[id]; m != nil {
			m.hasState = true
		}
	}
}

// restartState is the state when no member of the ring holds one from the
// last generation: the most advanced state a re-joined worker holds (it
// becomes the broadcast source), else the latest checkpoint, else fresh.
// It must be called after admit, with the new ring in place.
func (r *Rendezvous) restartState() (State, int64) {
	best := -1
	for i, id := range r.ring {
		if h := r.members[id].held; h != nil && h.Step > 0 && (best < 0 || h.Step > r.members[r.ring[best]].held.Step) {
			best = i
		}
	}
	if best >= 0 {
		h := r.members[r.ring[best]].held
		if r.latestCkp == nil || h.Step >= r.latestCkp.Step {
			return State{Kind: StartBroadcast, SourceRank: best}, h.Step
		}
	}
	if r.latestCkp != nil {
		return State{Kind: StartCheckpoint, CheckpointPath: r.latestCkp.Path}, r.latestCkp.Step
	}
	return State{Kind: StartFresh}, 0
}

// admit moves waiting workers into the ring, in join order, up to
// MaxWorkers, and returns their ids.
func (r *Rendezvous) admit() []string {
	room := r.cfg.MaxWorkers - len(r.ring)
	if room > len(r.pending) {
		room = len(r.pending)
	}
	if room <= 0 {
		return nil
	}
	admitted := append([]string(nil), r.pending[:room]...)
	r.pending = append([]string(nil), r.pending[room:]...)
	r.ring = append(r.ring, admitted...)
	return admitted
}

// open stamps a new generation over the current ring.
func (r *Rendezvous) open(now time.Time, action Action, start State, step int64, reason string) {
	g := Generation{
		Number:    max(r.current.Number, r.genFloor) + 1,
		Action:    action,
		Members:   append([]string(nil), r.ring...),
		Peers:     make([]string, len(r.ring)),
		Start:     start,
		StartStep: step,
		Reason:    reason,
		At:        now,
	}
	for i, id := range r.ring {
		m := r.members[id]
		m.state = MemberActive
		if action == ActionRun {
			m.step = step
			// From now on the member's state is this generation's.
			m.held = nil
			if start.Kind != StartBroadcast {
				m.hasState = true // it loads the state itself
			}
		}
		g.Peers[i] = m.req.DataAddr
	}
	switch action {
	case ActionRun:
		r.phase = PhaseRunning
		r.pausedAt = time.Time{}
	case ActionPause:
		r.phase = PhasePaused
	case ActionStop:
		r.phase = PhaseStopped
	}
	r.settleAt = time.Time{}
	r.record(g)
}

// stop ends the run with a final generation.
func (r *Rendezvous) stop(now time.Time, reason string, checkpoint bool) {
	start, step := r.restartState()
	if len(r.ring) > 0 {
		start, step = r.survivorState()
	}
	r.open(now, ActionStop, start, step, reason)
	r.current.CheckpointBeforeStop = checkpoint
	r.gens[len(r.gens)-1].CheckpointBeforeStop = checkpoint
}

func (r *Rendezvous) record(g Generation) {
	r.current = g
	r.gens = append(r.gens, g)
	if len(r.gens) > r.cfg.HistoryLimit {
		r.gens = r.gens[len(r.gens)-r.cfg.HistoryLimit:]
	}
}

// Assignment returns the latest assignment of worker id. A worker waiting
// for a place gets ErrNotAssigned (or, once the run stopped, a stop order
// with rank -1); a removed or unknown worker gets ErrUnknownWorker.
func (r *Rendezvous) Assignment(id string) (Assignment, error) {
	m, ok := r.members[id]
	if !ok {
		for i := len(r.departed) - 1; i >= 0; i-- {
			if d := r.departed[i]; d.id == id {
				return Assignment{}, fmt.Errorf("%s was removed from the run (%s: %s): %w", id, d.state, d.reason, ErrUnknownWorker)
			}
		}
		return Assignment{}, fmt.Errorf("%s: %w", id, ErrUnknownWorker)
	}
	g := r.current
	a := Assignment{
		Generation: g.Number,
		Action:     g.Action,
		Rank:       -1,
		World:      len(g.Members),
		Peers:      append([]string(nil), g.Peers...),
		PeerIDs:    append([]string(nil), g.Members...),
		JobID:      r.cfg.JobID,
		Config:     r.cfg.RunConfig,
		Start:      g.Start,
		StartStep:  g.StartStep,
		Reason:     g.Reason,
	}
	if m.state == MemberActive {
		for i, mid := range g.Members {
			if mid == id {
				a.Rank = i
			}
		}
		a.CheckpointBeforeStop = g.CheckpointBeforeStop
		return a, nil
	}
	if r.phase == PhaseStopped && g.Number != 0 {
		return a, nil // a waiting worker is told to stop, holding no rank
	}
	return Assignment{}, fmt.Errorf("%s is waiting for a place: %w", id, ErrNotAssigned)
}

// Generations returns the recorded generations, oldest first (at most
// HistoryLimit).
func (r *Rendezvous) Generations() []Generation {
	out := make([]Generation, len(r.gens))
	for i, g := range r.gens {
		out[i] = g.clone()
	}
	return out
}

// MemberStatus is one row of the members table.
type MemberStatus struct {
	ID          string
	Name        string
	State       MemberState
	Rank        int // -1 when holding no rank
	DataAddr    string
	GossipAddr  string
	JoinedAt    time.Time
	LeftAt      time.Time // departed members only
	Reason      string    // why it departed
	Step        int64
	Progress    Progress
	ProgressGen uint64
	ProgressAt  time.Time
	LastError   string
}

// Members returns the present members in rank order then join order,
// followed by the departed ones (most recent last).
func (r *Rendezvous) Members() []MemberStatus {
	row := func(m *member, rank int) MemberStatus {
		return MemberStatus{
			ID: m.id, Name: m.req.Name, State: m.state, Rank: rank,
			DataAddr: m.req.DataAddr, GossipAddr: m.req.GossipAddr,
			JoinedAt: m.joinedAt, LeftAt: m.leftAt, Reason: m.reason,
			Step: m.step, Progress: m.progress, ProgressGen: m.progressGen,
			ProgressAt: m.progressAt, LastError: m.lastErr,
		}
	}
	var out []MemberStatus
	for i, id := range r.ring {
		out = append(out, row(r.members[id], i))
	}
	for _, id := range r.pending {
		out = append(out, row(r.members[id], -1))
	}
	for _, m := range r.departed {
		out = append(out, row(m, -1))
	}
	return out
}

// Aggregate summarises the latest progress of the current generation.
func (r *Rendezvous) Aggregate() Aggregate {
	a := Aggregate{Generation: r.current.Number}
	for _, id := range r.ring {
		m := r.members[id]
		if m.progressGen != r.current.Number || m.progressAt.IsZero() {
			continue
		}
		if a.Workers == 0 || m.progress.Step < a.MinStep {
			a.MinStep = m.progress.Step
		}
		if m.progress.Step > a.MaxStep {
			a.MaxStep = m.progress.Step
		}
		a.Workers++
		a.Loss += m.progress.Loss
		a.SamplesPerSec += m.progress.SamplesPerSec
		if m.progressAt.After(a.At) {
			a.At = m.progressAt
		}
	}
	if a.Workers > 0 {
		a.Loss /= float64(a.Workers)
	}
	return a
}

// IsActive reports whether id holds a rank in the current generation.
func (r *Rendezvous) IsActive(id string) bool {
	m, ok := r.members[id]
	return ok && m.state == MemberActive
}

// Size returns the number of workers holding a rank and waiting for one.
func (r *Rendezvous) Size() (active, pending int) { return len(r.ring), len(r.pending) }

// Present reports whether id is a member (active or waiting).
func (r *Rendezvous) Present(id string) bool {
	_, ok := r.members[id]
	return ok
}

func (g Generation) clone() Generation {
	g.Members = append([]string(nil), g.Members...)
	g.Peers = append([]string(nil), g.Peers...)
	return g
}

func without(s []string, x string) []string {
	out := s[:0:0]
	for _, v := range s {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}

// MaxGeneration bounds the generation numbers a worker may hold when it
// joins, so that the generations numbered above it never wrap around to 0.
const MaxGeneration = 1 << 62

package membership

import (
	"fmt"
	"time"

	"github.com/infonce/infonce/coordinator"
)

// Phase is where the worker stands in the run.
type Phase int

const (
	// PhaseWaiting: waiting for the coordinator's next assignment (before
	// the first generation, or after one ended).
	PhaseWaiting Phase = iota + 1
	// PhasePaused: too few workers remain; the state is kept in memory
	// until the next generation.
	PhasePaused
	// PhaseStarting: an ActionRun generation was taken; its ring and start
	// state are being set up.
	PhaseStarting
	// PhaseRunning: the generation trains.
	PhaseRunning
	// PhaseDone: the worker leaves the run.
	PhaseDone
)

func (p Phase) String() string {
	switch p {
	case PhaseWaiting:
		return "waiting"
	case PhasePaused:
		return "paused"
	case PhaseStarting:
		return "starting"
	case PhaseRunning:
		return "running"
	case PhaseDone:
		return "done"
	}
	return fmt.Sprintf("Phase(%d)", int(p))
}

// Kind is the kind of an Action.
type Kind int

const (
	// Save: write a checkpoint of the Step completed steps and commit it
	// to the coordinator. Only rank 0 of the last generation is told to.
	// With BestEffort a failure is logged; with Retry (a periodic save) it
	// is logged and counted, the next ShareSave tells every rank, and the
	// next interval tries again; otherwise it is fatal.
	Save Kind = iota + 1
	// Start: set up Assignment's generation (configure the trainer the
	// first time, build the ring, load the start state), then report
	// Configured and Started.
	Start
	// Run: run step Step, asking every rank to stop after it when
	// AskStop is set; then report StepDone or StepFailed.
	Run
	// Record: step Step completed on this rank (metrics, observers).
	Record
	// Skip: step Step was skipped, its summed loss or gradient not finite;
	// Bad is the count of such steps in a row.
	Skip
	// Progress: tell the coordinator that Step steps are complete.
	Progress
	// Checksum: compare the parameters' checksum across the ranks after
	// Step steps.
	Checksum
	// Finish: rank 0 ends the training: saves the final checkpoint, tells
	// the coordinator, evaluates; then reports Finished.
	Finish
	// End: the current generation ends with Outcome (the I/O loop leaves
	// the generation, then reports GenerationEnded).
	End
	// ReportAbort: tell the coordinator that the run aborted at Step.
	ReportAbort
	// ReportFatal: tell the coordinator that this worker met a fatal
	// error at Step.
	ReportFatal
	// Exit: leave the run with Outcome.
	Exit
	// ShareSave: every rank learns how rank 0's periodic save of Step
	// went: rank 0 sends SaveFailures (how many saves in a row have failed
	// up to this one, 0 when it succeeded), the other ranks receive it;
	// every rank then reports SaveShared with the count.
	ShareSave
)

func (k Kind) String() string {
	switch k {
	case Save:
		return "save"
	case Start:
		return "start"
	case Run:
		return "run"
	case Record:
		return "record"
	case Skip:
		return "skip"
	case Progress:
		return "progress"
	case Checksum:
		return "checksum"
	case Finish:
		return "finish"
	case End:
		return "end"
	case ReportAbort:
		return "report-abort"
	case ReportFatal:
		return "report-fatal"
	case Exit:
		return "exit"
	case ShareSave:
		return "share-save"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Outcome is how a generation or the whole run ended.
type Outcome int

const (
	// Continue: the generation ended; wait for the next one.
	Continue Outcome = iota + 1
	// Newer: a newer generation exists; this one must not run another step.
	Newer
	// Failed: a collective or the ring failed (a dead neighbour, a broken
	// connection, a generation cancelled); wait for the next one.
	Failed
	// Finished: the training is complete (rank 0 has the summary).
	Finished
	// Stopped: the worker stopped on request.
	Stopped
	// RunStopped: the coordinator stopped the run.
	RunStopped
	// Aborted: every rank met the same error (too many non-finite steps,
	// too many failed saves in a row).
	Aborted
	// Fatal: this worker must not continue (a corrupt state, a checkpoint
	// it cannot write, diverged parameters).
	Fatal
	// Broken: the worker cannot go on (the control plane failed, an
	// action it does not know).
	Broken
)

func (o Outcome) String() string {
	switch o {
	case Continue:
		return "continue"
	case Newer:
		return "newer"
	case Failed:
		return "failed"
	case Finished:
		return "finished"
	case Stopped:
		return "stopped"
	case RunStopped:
		return "run-stopped"
	case Aborted:
		return "aborted"
	case Fatal:
		return "fatal"
	case Broken:
		return "broken"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Action is one thing the I/O loop must do, in the order given.
type Action struct {
	Kind       Kind
	Step       int64
	Bad        int  // Skip, End (Aborted): non-finite steps in a row
	AskStop    bool // Run
	BestEffort bool // Save
	Retry      bool // Save: a periodic save, retried at the next interval
	// SaveFailures is, for Save (Retry) and ShareSave, the count of failed
	// saves in a row before this one; for End (Aborted), the count that
	// ended the run.
	SaveFailures int
	Outcome      Outcome
	Newer        uint64                 // End (Newer): the newer generation
	Assignment   coordinator.Assignment // Start
}

func (a Action) String() string {
	switch a.Kind {
	case Save:
		switch {
		case a.BestEffort:
			return fmt.Sprintf("save %d best-effort", a.Step)
		case a.Retry:
			return fmt.Sprintf("save %d retry", a.Step)
		}
		return fmt.Sprintf("save %d", a.Step)
	case ShareSave:
		return fmt.Sprintf("share-save %d failed=%d", a.Step, a.SaveFailures)
	case Start:
		return fmt.Sprintf("start g%d", a.Assignment.Generation)
	case Run:
		if a.AskStop {
			return fmt.Sprintf("run %d stop", a.Step)
		}
		return fmt.Sprintf("run %d", a.Step)
	case Record, Progress, Checksum, Finish, ReportAbort, ReportFatal:
		return fmt.Sprintf("%s %d", a.Kind, a.Step)
	case Skip:
		return fmt.Sprintf("skip %d bad=%d", a.Step, a.Bad)
	case End:
		switch a.Outcome {
		case Newer:
			return fmt.Sprintf("end newer g%d", a.Newer)
		case Aborted:
			if a.SaveFailures > 0 {
				return fmt.Sprintf("end aborted %d save-failures=%d", a.Step, a.SaveFailures)
			}
			return fmt.Sprintf("end aborted %d bad=%d", a.Step, a.Bad)
		}
		return "end " + a.Outcome.String()
	case Exit:
		return "exit " + a.Outcome.String()
	}
	return a.Kind.String()
}

// Schedule describes the training of the run, known once the trainer is built.
type Schedule struct {
	TotalSteps int64
	// MaxBadSteps non-finite steps in a row abort the run.
	MaxBadSteps int
	// ChecksumEvery and CheckpointEvery are step intervals (0: never).
	ChecksumEvery   int64
	CheckpointEvery int64
	// MaxSaveFailures periodic saves in a row that fail abort the run (0:
	// never).
	MaxSaveFailures int
}

// Config configures the machine.
type Config struct {
	// ProgressEvery is the least time between two progress reports; the
	// last step is always reported.
	ProgressEvery time.Duration
}

// DefaultConfig is the worker's.
func DefaultConfig() Config { return Config{ProgressEvery: time.Second} }

// Held is what the worker holds, as it announces it when it joins the run
// again.
type Held struct {
	// Generation is the last generation whose trainer the worker set up
	// (0: none).
	Generation uint64
	// Step is the next step the state in memory would run.
	Step int64
	// HasState: the state was loaded (fresh, from a checkpoint, or from a
	// broadcast) at least once; without it the held step means nothing.
	HasState bool
	// Quitting: the worker leaves the run and must not join it again.
	Quitting bool
}

// JoinState is the state a worker announces when it joins again (nil when
// it never set up a generation).
func (h Held) JoinState(jobID string) *coordinator.HeldState {
	if h.Generation == 0 {
		return nil
	}
	s := &coordinator.HeldState{Step: h.Step, Generation: h.Generation, JobID: jobID}
	if !h.HasState {
		s.Step = 0
	}
	return s
}

// Machine is the generation logic of one worker. It is not safe for
// concurrent use: the worker's training loop owns it and publishes Held to
// the control loop.
type Machine struct {
	cfg   Config
	phase Phase
	gen   uint64 // the last generation taken
	rank  int    // this worker's rank in it (or in the last pause)
	world int

	trainer bool // the trainer is built
	run     Schedule
	held    Held
	next    int64 // the next step to run with the state held
	bad     int   // non-finite steps in a row, as every rank counts them
	// saveFails is the count of rank 0's periodic saves in a row that
	// failed, as every rank learnt it from the last ShareSave.
	saveFails int

	lastProgress time.Time
}

// New returns a machine waiting for its first assignment.
func New(cfg Config) *Machine {
	return &Machine{cfg: cfg, phase: PhaseWaiting}
}

// Phase returns the current phase.
func (m *Machine) Phase() Phase { return m.phase }

// Generation returns the last generation taken (0: none yet).
func (m *Machine) Generation() uint64 { return m.gen }

// Rank returns this worker's rank in the last generation or pause, and
// that generation's size.
func (m *Machine) Rank() (rank, world int) { return m.rank, m.world }

// Next returns the next step to run with the state held, and the count of
// non-finite steps in a row before it.
func (m *Machine) Next() (step int64, bad int) { return m.next, m.bad }

// Held returns what the worker holds, for a re-join.
func (m *Machine) Held() Held { return m.held }

// save is the checkpoint of the completed steps, written by rank 0 only.
func (m *Machine) save(best bool) []Action {
	if m.rank != 0 || !m.trainer {
		return nil
	}
	return []Action{{Kind: Save, Step: m.next, BestEffort: best}}
}

// Assigned takes assignment a, newer than Generation. A stop ends the run
// (rank 0 saving first when asked to); a pause keeps the state and ranks
// the members still there; a run starts the generation. An assignment not
// newer than the last one taken is ignored.
func (m *Machine) Assigned(a coordinator.Assignment) []Action {
	if a.Generation <= m.gen || m.phase == PhaseDone {
		return nil
	}
	m.gen = a.Generation
	switch a.Action {
	case coordinator.ActionStop:
		var acts []Action
		if a.CheckpointBeforeStop && m.trainer && a.Rank == 0 {
			m.rank = 0
			acts = m.save(false)
		}
		m.phase = PhaseDone
		return append(acts, Action{Kind: Exit, Outcome: RunStopped})
	case coordinator.ActionPause:
		// The pause ranks the members still there: its rank 0 saves on a
		// stop.
		m.rank, m.world = a.Rank, a.World
		m.phase = PhasePaused
		return nil
	case coordinator.ActionRun:
		m.phase = PhaseStarting
		return []Action{{Kind: Start, Assignment: a}}
	}
	m.phase = PhaseDone
	return []Action{{Kind: Exit, Outcome: Broken}}
}

// WaitEnded reports that the wait for the generation after Generation
// ended without one, with why: Stopped (a stop request while waiting:
// rank 0 of the last generation saves what it holds, as best it can),
// RunStopped, or Broken.
func (m *Machine) WaitEnded(why Outcome) []Action {
	m.phase = PhaseDone
	var acts []Action
	if why == Stopped {
		m.held.Quitting = true
		if m.held.HasState {
			// Outside a running generation the other members may hold
			// the same state and save it, and a worker that cannot write
			// the run directory must still stop as asked.
			acts = m.save(true)
		}
	}
	return append(acts, Action{Kind: Exit, Outcome: why})
}

// Configured reports that the trainer of the generation is set up; run is
// non-nil when it was built now (the first generation), which starts the
// state afresh at step 0.
func (m *Machine) Configured(run *Schedule) {
	if run != nil {
		m.trainer, m.run, m.next = true, *run, 0
	}
	m.held.Generation = m.gen
}

// Started reports that the ring of the generation is up and its start
// state loaded: this worker is rank of world, and the state runs step next
// with bad non-finite steps in a row before it. The I/O loop then asks
// Boundary before every step.
func (m *Machine) Started(rank, world int, next int64, bad int) {
	m.rank, m.world, m.next, m.bad = rank, world, next, bad
	m.held.HasState, m.held.Step = true, next
	m.phase = PhaseRunning
}

// Boundary decides what happens at the boundary before the next step,
// given the newest generation known there (from the control stream or the
// coordinator's answer to a boundary report) and whether this worker was
// asked to stop. A newer generation (a joiner admitted at this boundary, a
// member gone) means the step must not start. After the last step, rank 0
// finishes the run and the other ranks stay members until the
// coordinator's stop, ready to take over should rank 0 die.
func (m *Machine) Boundary(newest uint64, stopAsked bool) Action {
	if m.next >= m.run.TotalSteps {
		if m.rank == 0 {
			return Action{Kind: Finish, Step: m.next}
		}
		return m.end(Continue)
	}
	if newest > m.gen {
		a := m.end(Newer)
		a.Newer = newest
		return a
	}
	return Action{Kind: Run, Step: m.next, AskStop: stopAsked}
}

// AtEnd reports whether the state held has run every step, so that the I/O
// loop knows whether to mark a boundary before calling Boundary.
func (m *Machine) AtEnd() bool { return m.next >= m.run.TotalSteps }

func (m *Machine) end(o Outcome) Action {
	m.phase = PhaseWaiting
	return Action{Kind: End, Outcome: o}
}

// StepResult is what a completed step reports.
type StepResult struct {
	// NonFinite: the summed loss or gradient was not finite; every rank
	// skipped the step alike and left the parameters unchanged.
	NonFinite bool
	// Stop: a rank asked to stop, and every rank agreed in the step.
	Stop bool
}

// StepDone reports that step completed at now (or was skipped, on every
// rank alike). It returns what to do before the next boundary: record it,
// report progress (at most every ProgressEvery, and after the last step),
// compare checksums and save a checkpoint at their intervals (never a
// periodic checkpoint after the last step: Finish writes that one), and end
// the generation on a stop or after too many non-finite steps in a row.
func (m *Machine) StepDone(now time.Time, step int64, r StepResult) []Action {
	m.next = step + 1
	m.held.Step = m.next
	var acts []Action
	if r.NonFinite {
		m.bad++
		acts = append(acts, Action{Kind: Skip, Step: step, Bad: m.bad})
		if m.bad >= m.run.MaxBadSteps {
			acts = append(acts, m.save(true)...)
			m.phase = PhaseWaiting
			return append(acts, Action{Kind: End, Outcome: Aborted, Step: step, Bad: m.bad})
		}
		if r.Stop {
			return append(acts, m.stop()...)
		}
		return acts
	}
	m.bad = 0
	acts = append(acts, Action{Kind: Record, Step: step})
	if now.Sub(m.lastProgress) > m.cfg.ProgressEvery || m.next == m.run.TotalSteps {
		acts = append(acts, Action{Kind: Progress, Step: m.next})
		m.lastProgress = now
	}
	if every := m.run.ChecksumEvery; every > 0 && m.next%every == 0 {
		acts = append(acts, Action{Kind: Checksum, Step: m.next})
	}
	if every := m.run.CheckpointEvery; every > 0 && m.next%every == 0 && m.next < m.run.TotalSteps && m.trainer {
		// Rank 0 saves; every rank then learns how it went, so that all
		// stop together when saves keep failing.
		if s := m.save(false); len(s) > 0 {
			s[0].Retry, s[0].SaveFailures = true, m.saveFails
			acts = append(acts, s...)
		}
		acts = append(acts, Action{Kind: ShareSave, Step: m.next, SaveFailures: m.saveFails})
	}
	if r.Stop {
		acts = append(acts, m.stop()...)
	}
	return acts
}

// SaveShared reports the count of failed periodic saves in a row that rank
// 0 sent in the ShareSave of step: 0 after a save that succeeded. Every
// rank gets the same count, so every rank takes the same decision: at
// MaxSaveFailures the generation ends Aborted, and so does the run;
// below it the run goes on and the next interval saves again.
func (m *Machine) SaveShared(step int64, failures int) []Action {
	m.saveFails = failures
	if failures == 0 || m.run.MaxSaveFailures <= 0 || failures < m.run.MaxSaveFailures {
		return nil
	}
	m.phase = PhaseWaiting
	return []Action{{Kind: End, Outcome: Aborted, Step: step, SaveFailures: failures}}
}

// SaveFailures returns the count of failed periodic saves in a row, as
// every rank learnt it.
func (m *Machine) SaveFailures() int { return m.saveFails }

// stop ends the run after a stop request that every rank agreed on in a
// step: rank 0 saves.
func (m *Machine) stop() []Action {
	m.phase = PhaseWaiting
	return append(m.save(false), Action{Kind: End, Outcome: Stopped})
}

// GenerationEnded reports how the generation taken last ended (or how
// setting it up failed). A failed ring, a newer generation or a refused
// end of training leave the worker a member, waiting for the next
// generation with the state it holds; a stop, an abort or a fatal error
// end its part in the run, the last two told to the coordinator.
func (m *Machine) GenerationEnded(o Outcome) []Action {
	switch o {
	case Continue, Newer, Failed:
		m.phase = PhaseWaiting
		return nil
	case Aborted:
		m.phase, m.held.Quitting = PhaseDone, true
		return []Action{{Kind: ReportAbort, Step: m.next}, {Kind: Exit, Outcome: Aborted}}
	case Fatal:
		m.phase, m.held.Quitting = PhaseDone, true
		return []Action{{Kind: ReportFatal, Step: m.next}, {Kind: Exit, Outcome: Fatal}}
	case Stopped:
		m.phase, m.held.Quitting = PhaseDone, true
	default: // Finished, RunStopped, Broken
		m.phase = PhaseDone
	}
	return []Action{{Kind: Exit, Outcome: o}}
}

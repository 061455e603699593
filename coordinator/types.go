package coordinator

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// ProtocolVersion is the version of the control-plane protocol this package
// speaks. A worker speaking another version is refused at Join.
const ProtocolVersion = 1

// Action tells a worker what to do with a generation.
type Action int

const (
	// ActionRun: train with the assigned rank and ring.
	ActionRun Action = iota + 1
	// ActionPause: too few workers remain; keep the state in memory and
	// wait for the next generation.
	ActionPause
	// ActionStop: the run is over for this worker. When
	// Assignment.CheckpointBeforeStop is set, save a checkpoint first.
	ActionStop
)

func (a Action) String() string {
	switch a {
	case ActionRun:
		return "run"
	case ActionPause:
		return "pause"
	case ActionStop:
		return "stop"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// StartKind says where the state of a generation comes from.
type StartKind int

const (
	// StartFresh: initialise the parameters from the run's seed.
	StartFresh StartKind = iota + 1
	// StartCheckpoint: load the checkpoint at State.CheckpointPath.
	StartCheckpoint
	// StartBroadcast: rank State.SourceRank holds the latest state in
	// memory and broadcasts it to the others.
	StartBroadcast
)

func (k StartKind) String() string {
	switch k {
	case StartFresh:
		return "fresh"
	case StartCheckpoint:
		return "checkpoint"
	case StartBroadcast:
		return "broadcast"
	}
	return fmt.Sprintf("StartKind(%d)", int(k))
}

// State is the state a generation starts from.
type State struct {
	Kind           StartKind
	CheckpointPath string // for StartCheckpoint
	SourceRank     int    // for StartBroadcast
}

func (s State) String() string {
	switch s.Kind {
	case StartCheckpoint:
		return "checkpoint " + s.CheckpointPath
	case StartBroadcast:
		return fmt.Sprintf("broadcast from rank %d", s.SourceRank)
	}
	return s.Kind.String()
}

// Assignment is what one worker is told to do in one generation.
type Assignment struct {
	Generation uint64
	Action     Action
	// Rank of the worker in the ring, 0..World-1; -1 for a worker that is
	// told to stop before it ever held a rank.
	Rank  int
	World int
	// Peers are the data-plane addresses of the ring in rank order;
	// PeerIDs the matching worker ids.
	Peers   []string
	PeerIDs []string
	JobID   string
	// Config is the run configuration, opaque to the coordinator.
	Config []byte
	Start  State
	// StartStep is the number of optimizer steps already taken by the
	// state the generation starts from: the first step to run.
	StartStep int64
	// Reason explains the decision, for logs.
	Reason string
	// CheckpointBeforeStop asks the worker to save a checkpoint before it
	// stops (ActionStop only).
	CheckpointBeforeStop bool
}

// abortedPrefix begins the Reason of the stop that ends a run aborted by
// one of its workers (Rendezvous.Fail with abort).
const abortedPrefix = "run aborted by "

// Aborted reports whether a is the stop of a run that a worker aborted (an
// error every rank meets at the same step): a rank that learns of the end
// of its run this way, rather than meeting the error itself, ends with
// that error too, not as a finished run.
func (a Assignment) Aborted() bool {
	return a.Action == ActionStop && strings.HasPrefix(a.Reason, abortedPrefix)
}

// JoinRequest describes a worker that asks to join the run.
type JoinRequest struct {
	// Name is a human-readable label (host or pod name), not an identity.
	Name string
	// DataAddr is the host:port ring peers dial for the data plane.
	DataAddr string
	// GossipAddr is the host:port of the worker's memberlist node, if any.
	GossipAddr string
	// Fingerprint names the parts of the configuration that must agree
	// across the run, for example {"model": "vit-t/16 d=256",
	// "objective": "infonce", "batch": "1024"}. An empty fingerprint means
	// the worker has no configuration of its own and takes the run's.
	Fingerprint Fingerprint
	// Held, when set, is the training state the worker still holds in
	// memory: it joins again after its coordinator restarted, or after it
	// was removed from the run (a partition, a stall).
	Held *HeldState
}

// HeldState describes the training state a re-joining worker holds.
type HeldState struct {
	// Step is the number of optimizer steps the state completed.
	Step int64
	// Generation is the newest generation the worker ran in.
	Generation uint64
	// JobID is the run the state belongs to.
	JobID string
}

// Progress is a worker's report after a step.
type Progress struct {
	// Step is the number of optimizer steps completed.
	Step int64
	// Loss is the loss of the last step.
	Loss float64
	// SamplesPerSec is this worker's own throughput (its rows of the
	// global batch per second); the aggregate sums them.
	SamplesPerSec float64
}

// Aggregate summarises the latest progress of the workers of the current
// generation.
type Aggregate struct {
	Generation uint64
	Workers    int     // workers that reported in this generation
	MinStep    int64   // slowest reporter's completed steps
	MaxStep    int64   // fastest reporter's completed steps
	Loss       float64 // mean of the reporters' latest losses
	// SamplesPerSec is the sum of the reporters' throughputs.
	SamplesPerSec float64
	At            time.Time
}

// Checkpoint is a checkpoint that a worker announced as saved.
type Checkpoint struct {
	Step       int64
	Path       string
	Generation uint64
	By         string
	At         time.Time
}

// Fingerprint holds the named parts of a run configuration that all workers
// of a run must share. Values are compared as strings.
type Fingerprint map[string]string

// Diff lists the fields where f (the run's) and other (a worker's) differ,
// sorted by field name.
func (f Fingerprint) Diff(other Fingerprint) []FieldDiff {
	keys := make(map[string]struct{}, len(f)+len(other))
	for k := range f {
		keys[k] = struct{}{}
	}
	for k := range other {
		keys[k] = struct{}{}
	}
	var diffs []FieldDiff
	for k := range keys {
		a, okA := f[k]
		b, okB := other[k]
		if okA != okB || a != b {
			diffs = append(diffs, FieldDiff{Field: k, Run: a, Worker: b, RunHas: okA, WorkerHas: okB})
		}
	}
	sort.Slice(diffs, func(i, j int) bool { return diffs[i].Field < diffs[j].Field })
	return diffs
}

func (f Fingerprint) clone() Fingerprint {
	if f == nil {
		return nil
	}
	c := make(Fingerprint, len(f))
	for k, v := range f {
		c[k] = v
	}
	return c
}

// FieldDiff is one field on which a worker's configuration differs from
// the run's.
type FieldDiff struct {
	Field             string
	Run, Worker       string
	RunHas, WorkerHas bool
}

func (d FieldDiff) String() string {
	show := func(v string, has bool) string {
		if !has {
			return "(unset)"
		}
		return fmt.Sprintf("%q", v)
	}
	return fmt.Sprintf("%s: run has %s, worker has %s", d.Field, show(d.Run, d.RunHas), show(d.Worker, d.WorkerHas))
}

// FingerprintMismatchError refuses a worker whose configuration differs
// from the run's.
type FingerprintMismatchError struct {
	Diffs []FieldDiff
}

func (e *FingerprintMismatchError) Error() string {
	parts := make([]string, len(e.Diffs))
	for i, d := range e.Diffs {
		parts[i] = d.String()
	}
	return "worker configuration does not match the run (" + strings.Join(parts, "; ") +
		"): start the worker with the run's configuration"
}

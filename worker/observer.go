package worker

// Observer receives a worker's events, for metrics endpoints and status
// pages. Its methods are called from the training loop and must return
// quickly.
type Observer interface {
	// StepDone follows every completed step of generation gen on rank
	// rank of world ranks.
	StepDone(st StepStats, gen uint64, rank, world int)
	// GenerationStarted follows the start state of a generation.
	GenerationStarted(gen uint64, rank, world int)
	// CheckpointSaved follows a saved checkpoint.
	CheckpointSaved(step int64, dir string)
}

// nopObserver is the Observer of a run without one.
type nopObserver struct{}

func (nopObserver) StepDone(StepStats, uint64, int, int) {}
func (nopObserver) GenerationStarted(uint64, int, int)   {}
func (nopObserver) CheckpointSaved(int64, string)        {}

// SaveObserver is an Observer that also wants to know of checkpoint saves
// that failed (and are retried at the next interval).
type SaveObserver interface {
	CheckpointFailed(step int64, err error)
}

// saveFailed tells o of a failed save, if it wants to know.
func saveFailed(o Observer, step int64, err error) {
	if s, ok := o.(SaveObserver); ok {
		s.CheckpointFailed(step, err)
	}
}

// RunObserver is an Observer that also wants the run's configuration and
// the size of its parameter buffer, once the trainer is built.
type RunObserver interface {
	RunConfigured(cfg Config, params int)
}

// EvalObserver is an Observer that also wants the evaluations of the run:
// those --eval-every runs during the training and the one at its end.
type EvalObserver interface {
	// Evaluated follows an evaluation of the parameters after done
	// completed steps.
	Evaluated(done int64, ev Evaluation)
}

// evaluated tells o of an evaluation, if it wants to know.
func evaluated(o Observer, done int64, ev Evaluation) {
	if e, ok := o.(EvalObserver); ok {
		e.Evaluated(done, ev)
	}
}

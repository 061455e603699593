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

// RunObserver is an Observer that also wants the run's configuration and
// the size of its parameter buffer, once the trainer is built.
type RunObserver interface {
	RunConfigured(cfg Config, params int)
}

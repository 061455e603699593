package worker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/rundir"
)

// Summary is the run's summary.json, its configuration a Config.
type Summary = rundir.Summary[Config]

// Metric is one line of metrics.jsonl.
type Metric = rundir.Metric

// Options are the parts of a run that are not its configuration.
type Options struct {
	Progress   io.Writer     // the human progress line; nil for none
	Logger     *slog.Logger  // nil for slog.Default()
	Evaluate   bool          // evaluate at the end (summary fields)
	ProgressDT time.Duration // at most this long between progress lines
	Resume     string        // start from this checkpoint directory ("" : fresh)
	Observer   Observer      // nil for none
	// MaxBadSteps is how many non-finite steps in a row are skipped
	// before the run stops with an error (0: DefaultMaxBadSteps).
	MaxBadSteps int
	// Faults are injected into the run, for tests (zero: none).
	Faults Faults
	// MaxSaveFailures is how many periodic saves in a row may fail, each
	// retried at the next interval, before the run stops with an error
	// (0: DefaultMaxSaveFailures).
	MaxSaveFailures int
	// Overwrite lets a run that does not resume remove the checkpoints of
	// another run in its run directory (StartFresh).
	Overwrite bool
}

// ErrStopped reports a run that stopped on request (SIGINT, SIGTERM) after
// saving a checkpoint; --resume continues it.
var ErrStopped = errors.New("stopped on request")

// RunLocal trains cfg on one process, evaluates, and writes metrics.jsonl,
// summary.json and a final checkpoint into cfg.Out.
func RunLocal(ctx context.Context, cfg Config, set *dataset.Set, opt Options) (*Summary, error) {
	return RunLocalData(ctx, cfg, &Data{Name: set.Name, Set: set}, opt)
}

// RunLocalData is RunLocal over any Data (LoadData).
func RunLocalData(ctx context.Context, cfg Config, data *Data, opt Options) (*Summary, error) {
	start := time.Now()
	log := opt.logger()
	var resume *checkpoint.Checkpoint
	if opt.Resume != "" {
		c, err := checkpoint.Load(ctx, opt.Resume)
		if err != nil {
			return nil, fmt.Errorf("--resume: %w", err)
		}
		resume = c
		if c.Manifest.RunID != "" {
			cfg.RunID = c.Manifest.RunID // a resumed run keeps its id
		}
	}
	if cfg.RunID == "" {
		cfg.RunID = NewRunID()
	}
	t, err := NewTrainerData[float32](cfg, data, nil)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("--out %s: %w", cfg.Out, err)
	}
	var first int64
	var changed []ChangedSetting
	if resume != nil {
		if first, err = t.Restore(resume); err != nil {
			return nil, fmt.Errorf("--resume: %w", err)
		}
		changed = changedSince(resume.Manifest.Config, cfg, resume.Dir, log)
		log.Info("resuming", "checkpoint", resume.Dir, "step", first, "run", cfg.RunID)
	} else if err := StartFresh(ctx, cfg.Out, cfg.RunID, opt.Overwrite, log); err != nil {
		return nil, err
	}
	rec, err := openRecorder(cfg, t.TotalSteps(), 1, opt, first > 0, first)
	if err != nil {
		return nil, err
	}
	defer rec.close()
	t.log = log
	log.Info("training", "run", cfg.RunID, "objective", cfg.Objective, "data", data.Name, "steps", t.TotalSteps(),
		"batch", cfg.Batch, "params", len(t.Model.P.W), "out", cfg.Out)

	if opt.Observer != nil {
		if r, ok := opt.Observer.(RunObserver); ok {
			r.RunConfigured(cfg, len(t.Model.P.G))
		}
		opt.Observer.GenerationStarted(0, 0, 1)
	}
	f, _, err := opt.Faults.withEnv()
	if err != nil {
		return nil, err
	}
	t.faultHook = f.nanHook()
	t.gradHook = f.dumpHook()
	t.saveHook = f.saveHook()
	var last StepStats
	comm := Single[float32]{}
	maxBad, bad := opt.MaxBadSteps, 0
	if maxBad <= 0 {
		maxBad = DefaultMaxBadSteps
	}
	maxSaveFail, saveFail := opt.MaxSaveFailures, 0
	if maxSaveFail <= 0 {
		maxSaveFail = DefaultMaxSaveFailures
	}
	trainStart := time.Now()
	work := context.WithoutCancel(ctx) // a stop request ends the run at a step boundary
	for step := first; step < t.TotalSteps(); step++ {
		if ctx.Err() != nil {
			dir, err := t.Save(work, step, 0)
			if err != nil {
				return nil, err
			}
			log.Info("stopped on request", "completed_steps", step, "checkpoint", dir)
			return nil, fmt.Errorf("%w after %d steps; checkpoint %s", ErrStopped, step, dir)
		}
		st, err := t.Step(work, comm, step)
		if errors.Is(err, ErrNonFinite) {
			// The step is skipped: the parameters, the optimizer and
			// MoCo's queue are as they were before it.
			bad++
			log.Warn("step skipped: the loss or gradient is not finite; the parameters are unchanged",
				"step", step, "loss", st.Loss, "bad_in_a_row", bad, "max_bad_steps", maxBad)
			if bad >= maxBad {
				return nil, fmt.Errorf("%w: %d non-finite steps in a row (steps %d to %d, --max-bad-steps %d); the parameters were never updated with them: lower --lr or set --clip-norm, check the data, or resume from the last checkpoint",
					ErrNonFinite, bad, step-int64(bad)+1, step, maxBad)
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		bad = 0
		last = st
		if opt.Observer != nil {
			opt.Observer.StepDone(st, 0, 0, 1)
		}
		if err := rec.step(st, 0); err != nil {
			return nil, err
		}
		// --checkpoint-every: the state after every N-th step, except
		// after the last one, which SaveFinal writes.
		if every, done := cfg.CheckpointEvery, step+1; every > 0 && done%every == 0 && done < t.TotalSteps() {
			// A save that fails loses nothing yet: the state is in memory
			// and the next interval tries again; only saves that keep
			// failing stop the run.
			dir, err := t.Save(work, done, 0)
			if err != nil {
				saveFail++
				rec.saveFailures++
				if opt.Observer != nil {
					saveFailed(opt.Observer, done, err)
				}
				if saveFail >= maxSaveFail {
					return nil, saveFailuresError(saveFail, done, maxSaveFail, cfg.Out, err)
				}
				log.Warn("checkpoint failed; the state is kept in memory and saved again at the next interval",
					"step", done, "failed_in_a_row", saveFail, "max_save_failures", maxSaveFail, "err", err)
				continue
			}
			saveFail = 0
			log.Info("checkpoint", "step", done, "dir", dir)
			if opt.Observer != nil {
				opt.Observer.CheckpointSaved(done, dir)
			}
		}
		if every := int64(cfg.EvalEvery); every > 0 && (step+1)%every == 0 && step+1 < t.TotalSteps() {
			// The evaluation's time is not the training's.
			evalStart := time.Now()
			ev, err := t.Evaluate(work)
			if err != nil {
				return nil, fmt.Errorf("evaluation after step %d: %w", step, err)
			}
			if err := rec.evaluation(st, ev); err != nil {
				return nil, err
			}
			if opt.Observer != nil {
				evaluated(opt.Observer, step+1, ev)
			}
			logEvaluation(log, step+1, ev)
			took := time.Since(evalStart)
			trainStart = trainStart.Add(took)
			rec.paused(took)
		}
	}
	trainSeconds := time.Since(trainStart).Seconds()
	rec.finish()

	sum := &Summary{
		RunID:     cfg.RunID,
		Objective: cfg.Objective, Data: cfg.Data, Workers: 1,
		Steps: t.TotalSteps(), Samples: t.TotalSteps() * int64(cfg.Batch),
		FinalLoss: last.Loss, FinalLogitScale: last.LogitScale,
		SamplesPerSecond:   float64((t.TotalSteps()-first)*int64(cfg.Batch)) / trainSeconds,
		TrainSeconds:       trainSeconds,
		ParamSHA256:        ParamSHA256(t.Model.P.W),
		StepTime:           rec.meanStepTime(),
		CheckpointFailures: rec.saveFailures,
		ChangedSettings:    changed,
		Config:             cfg,
	}
	if bad := t.BadSamples(); len(bad) > 0 {
		sum.BadSamples = bad
	}
	if err := t.SaveFinal(work); err != nil {
		return nil, err
	}
	if opt.Observer != nil {
		opt.Observer.CheckpointSaved(t.TotalSteps(), CheckpointDir(cfg.Out))
	}
	if opt.Evaluate {
		evalStart := time.Now()
		log.Info("evaluating")
		ev, err := t.Evaluate(work)
		if err != nil {
			return nil, fmt.Errorf("evaluation: %w", err)
		}
		sum.Evaluation = ev
		sum.EvalSeconds = time.Since(evalStart).Seconds()
		if opt.Observer != nil {
			evaluated(opt.Observer, t.TotalSteps(), ev)
		}
		if ev.VLAPlots != nil {
			if err := rundir.WriteVLAEval(cfg.Out, ev.VLAPlots); err != nil {
				return nil, err
			}
		}
	}
	sum.WallSeconds = time.Since(start).Seconds()
	sum.PeakRSSBytes = PeakRSS()
	if err := rundir.WriteSummary(cfg.Out, sum); err != nil {
		return nil, err
	}
	return sum, nil
}

// ErrSaveFailures reports a run stopped because its checkpoint saves kept
// failing.
var ErrSaveFailures = errors.New("checkpoint saves keep failing")

// saveFailuresError is the error of a run whose last n periodic saves
// failed, the last one of step, with cause (nil on a rank that only
// learnt the count from rank 0).
func saveFailuresError(n int, step int64, max int, out string, cause error) error {
	why := "see rank 0's log"
	if cause != nil {
		why = cause.Error()
	}
	return fmt.Errorf("%w: %d checkpoint saves in a row failed (the last after step %d, --max-save-failures %d): %s; the run stops: free space in or fix the permissions of %s, then continue from the last good checkpoint with --resume latest",
		ErrSaveFailures, n, step, max, why, CheckpointDir(out))
}

// NewRunID returns a new random run id: 8 hexadecimal digits. It is the
// run's name, not a source of training randomness (those are seeded from
// the run's seed).
func NewRunID() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on the systems infonce runs on; the
		// clock still tells two runs apart.
		return fmt.Sprintf("%08x", uint32(time.Now().UnixNano()))
	}
	return hex.EncodeToString(b[:])
}

// ErrOtherRun reports a run directory that holds the checkpoints of another
// run.
var ErrOtherRun = checkpoint.ErrOtherRun

// StartFresh prepares the run directory out of run id, a run that does not
// resume. Checkpoints of another run there are kept and the run is refused
// (an error wrapping ErrOtherRun), unless overwrite is set: they are then
// removed under the checkpoint lock, so that no save of a running run is cut
// into.
func StartFresh(ctx context.Context, out, id string, overwrite bool, log *slog.Logger) error {
	st := &checkpoint.Store{Root: CheckpointDir(out), Logger: log}
	ids, err := st.Runs()
	if err != nil {
		return fmt.Errorf("--out %s: %w", out, err)
	}
	others := slices.DeleteFunc(ids, func(s string) bool { return s == id && id != "" })
	if len(others) == 0 {
		return nil
	}
	for i, o := range others {
		if o == "" {
			others[i] = "(no id)"
		}
	}
	if !overwrite {
		return fmt.Errorf("--out %s holds the checkpoints of run %s: continue it with --resume latest, remove them with --overwrite, or choose another --out: %w",
			out, strings.Join(others, ", "), ErrOtherRun)
	}
	n, err := st.Clear(ctx)
	if err != nil {
		return fmt.Errorf("--out %s: --overwrite: %w", out, err)
	}
	log.Warn("--overwrite: removed the checkpoints of another run", "dir", st.Root, "runs", strings.Join(others, ", "), "checkpoints", n)
	return nil
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}

// recorder writes metrics.jsonl and the progress line.
type recorder struct {
	cfg        Config
	total      int64
	workers    int
	opt        Options
	w          *rundir.MetricsWriter
	start      time.Time
	lastLog    time.Time
	lastStep   int64
	lastPrint  time.Time
	printedEnd bool
	last       StepStats
	gen        uint64
	first      int64 // the first step this recorder saw
	window     Breakdown
	windowN    int
	sum        Breakdown
	sumN       int
	// saveFailures counts the failed checkpoint saves so far; every
	// metrics line carries it.
	saveFailures int
}

// meanStepTime is the mean breakdown of every step recorded.
func (r *recorder) meanStepTime() rundir.Breakdown {
	if r.sumN == 0 {
		return rundir.Breakdown{}
	}
	return rundir.Breakdown(r.sum.scale(1 / float64(r.sumN)))
}

// samplesPerSecond is the throughput since the recorder opened.
func (r *recorder) samplesPerSecond() float64 {
	return float64((r.last.Step+1-r.first)*int64(r.cfg.Batch)) / time.Since(r.start).Seconds()
}

func newRecorder(cfg Config, total int64, workers int, opt Options) (*recorder, error) {
	return openRecorder(cfg, total, workers, opt, false, 0)
}

// openRecorder opens metrics.jsonl anew, or for appending when a run
// continues at step next.
func openRecorder(cfg Config, total int64, workers int, opt Options, appendTo bool, next int64) (*recorder, error) {
	w, err := rundir.CreateMetrics(cfg.Out, appendTo)
	if err != nil {
		return nil, err
	}
	if opt.ProgressDT == 0 {
		opt.ProgressDT = 2 * time.Second
	}
	now := time.Now()
	return &recorder{cfg: cfg, total: total, workers: workers, opt: opt, w: w,
		start: now, lastLog: now, lastPrint: now, lastStep: next - 1, first: next}, nil
}

// step records a completed step: a metrics line every LogEvery steps and
// on the last one, and a progress line at least every ProgressDT.
func (r *recorder) step(st StepStats, gen uint64) error {
	r.last, r.gen = st, gen
	r.window.add(st.Times)
	r.windowN++
	r.sum.add(st.Times)
	r.sumN++
	done := st.Step + 1
	now := time.Now()
	if done%int64(r.cfg.LogEvery) == 0 || done == r.total {
		dt := now.Sub(r.lastLog).Seconds()
		m := Metric{
			Step: st.Step, Epoch: st.Epoch, Loss: st.Loss, LogitScale: st.LogitScale, LR: st.LR,
			GradNorm:         st.GradNorm,
			SamplesPerSecond: float64((st.Step-r.lastStep)*int64(r.cfg.Batch)) / dt,
			Time:             float64(now.UnixNano()) / 1e9,
			Workers:          r.workers, Generation: gen,
			CheckpointFailures: r.saveFailures,
			StepTime:           rundir.Breakdown(r.window.scale(1 / float64(r.windowN))),
			BadSamples:         st.BadSamples,
		}
		r.window, r.windowN = Breakdown{}, 0
		if err := r.w.Write(m); err != nil {
			return err
		}
		r.lastLog, r.lastStep = now, st.Step
	}
	if r.opt.Progress != nil && (now.Sub(r.lastPrint) >= r.opt.ProgressDT || done == r.total || done == r.first+1) {
		r.print(now)
	}
	return nil
}

func (r *recorder) print(now time.Time) {
	st := r.last
	done := st.Step + 1
	el := now.Sub(r.start).Seconds()
	rate := float64((done-r.first)*int64(r.cfg.Batch)) / el
	eta := time.Duration(float64(r.total-done) * el / float64(max(1, done-r.first)) * float64(time.Second)).Round(time.Second)
	fmt.Fprintf(r.opt.Progress, "step %*d/%d  epoch %d  loss %.4f  logit scale %6.2f  lr %.2e  %7.0f samples/s  ETA %s\n",
		len(fmt.Sprint(r.total)), done, r.total, st.Epoch, st.Loss, st.LogitScale, st.LR, rate, eta)
	r.lastPrint = now
}

// evaluation writes a metrics line with the evaluation after step st.
func (r *recorder) evaluation(st StepStats, ev Evaluation) error {
	return r.w.Write(Metric{
		Step: st.Step, Epoch: st.Epoch, Loss: st.Loss, LogitScale: st.LogitScale, LR: st.LR,
		Time: float64(time.Now().UnixNano()) / 1e9, Workers: r.workers, Eval: &ev,
	})
}

// paused takes d, the time the training stood still (an evaluation), out
// of the throughput of the next metrics line and of the run.
func (r *recorder) paused(d time.Duration) {
	r.start = r.start.Add(d)
	r.lastLog = r.lastLog.Add(d)
}

// logEvaluation logs the headline scores of the evaluation after done
// completed steps.
func logEvaluation(log *slog.Logger, done int64, ev Evaluation) {
	score := func(p *float64) any { // a score not measured logs as n/a
		if p == nil {
			return "n/a"
		}
		return *p
	}
	log.Info("evaluated", "step", done, "zero_shot_top1", score(ev.ZeroShotTop1), "recall_i2t_at_1", score(ev.RecallI2TAt1), "linear_probe", ev.LinearProbeAccuracy)
}

func (r *recorder) finish() {}

func (r *recorder) close() {
	r.w.Close()
}

// PeakRSS returns the process's peak resident set size in bytes.
func PeakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024 // kilobytes on Linux
}

// ParamSHA256 is the SHA-256 of the parameter buffer's bytes (little-endian
// float32 in a training run).
func ParamSHA256[T gemm.Float](w []T) string {
	s := sha256.Sum256(floatBytes(w))
	return hex.EncodeToString(s[:])
}

// writeJSON writes v to path atomically (rundir.WriteJSON): a temporary
// file, fsync, rename. The distributed run's rank 0 writes summary.json
// through it.
func writeJSON(path string, v any) error { return rundir.WriteJSON(path, v) }

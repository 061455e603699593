package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/infonce/infonce/internal/affinity"
	"github.com/infonce/infonce/model"
	"github.com/infonce/infonce/worker"
)

func init() {
	register("train", command{summary: "train a contrastive model (CLIP, SimCLR or MoCo)", run: runTrain})
}

// trainFlags binds the flags of a training run to cfg.
func trainFlags(fs *flag.FlagSet, cfg *worker.Config) {
	fs.StringVar(&cfg.Objective, "objective", cfg.Objective, "objective: "+strings.Join(worker.Objectives(), ", "))
	fs.StringVar(&cfg.Data, "data", cfg.Data, "data: mnist (embedded), idx:DIR, folder:DIR, csv:FILE (.csv, .tsv, .jsonl), wds:PATTERN (brace ranges), rlds:DIR or synthetic[:N]")
	dataFlags(fs, &cfg.DataOptions)
	fs.StringVar(&cfg.Classes, "classes", cfg.Classes, "class names, one per line in label order (default DIR/classes.txt for idx:DIR)")
	fs.IntVar(&cfg.Epochs, "epochs", cfg.Epochs, "epochs to train (when --steps is 0)")
	fs.Int64Var(&cfg.Steps, "steps", cfg.Steps, "optimizer steps to train; 0 means --epochs whole epochs")
	fs.IntVar(&cfg.Batch, "batch", cfg.Batch, "global batch size B (the same for any number of workers)")
	fs.StringVar(&cfg.Optimizer, "optimizer", cfg.Optimizer, "optimizer: adamw, sgd or lars")
	fs.Float64Var(&cfg.LR, "lr", cfg.LR, "peak learning rate")
	fs.StringVar(&cfg.Schedule, "schedule", cfg.Schedule, "learning-rate schedule after the warm-up: constant or cosine")
	fs.Float64Var(&cfg.MinLR, "min-lr", cfg.MinLR, "learning rate at the end of the cosine decay")
	fs.Float64Var(&cfg.WD, "wd", cfg.WD, "decoupled weight decay (not on biases, norm gains or the logit scale)")
	fs.Int64Var(&cfg.Warmup, "warmup", cfg.Warmup, "linear warm-up steps")
	fs.Float64Var(&cfg.ClipNorm, "clip-norm", cfg.ClipNorm, "clip the global gradient norm to this value (0: off)")
	fs.Float64Var(&cfg.Temperature, "temperature", cfg.Temperature, "temperature τ (fixed, or the initial value with --learn-temperature); default 0.07 for clip, 0.2 otherwise")
	fs.BoolVar(&cfg.LearnTemperature, "learn-temperature", cfg.LearnTemperature, "learn the logit scale t = ln(1/τ) (default true for clip)")
	fs.StringVar(&cfg.ImageTower, "image-tower", cfg.ImageTower, "image tower: "+strings.Join(model.TowerKinds(model.ModalityImage), ", ")+" (default mlp)")
	fs.StringVar(&cfg.TextTower, "text-tower", cfg.TextTower, "text tower: "+strings.Join(model.TowerKinds(model.ModalityText), ", ")+" (default bow)")
	towerFlags(fs, cfg)
	fs.IntVar(&cfg.Dim, "dim", cfg.Dim, "embedding dimension d")
	fs.Var((*intList)(&cfg.ImageHidden), "hidden", "widths of the image tower's hidden layers, comma-separated")
	fs.IntVar(&cfg.TextHidden, "text-hidden", cfg.TextHidden, "width of the text tower's embedding bag")
	fs.StringVar(&cfg.Activation, "activation", cfg.Activation, "activation: relu or gelu")
	fs.BoolVar(&cfg.LayerNorm, "layer-norm", cfg.LayerNorm, "LayerNorm before each hidden activation")
	fs.Var(maskFlag{cfg}, "mask-false-negatives", "pairs with the same id count as positives, not negatives: alone, the caption's; =label, =task or =episode for those fields")
	fs.Float64Var(&cfg.HardNegatives, "hard-negatives", cfg.HardNegatives, "clip, simclr, moco: weigh each negative by exp(β·logit), normalised over the negatives (hard negatives of Robinson et al. 2021); β, 0: off")
	fs.Float64Var(&cfg.Debias, "debias", cfg.Debias, "clip, simclr, moco: debiased contrastive loss with class prior τ+ in [0, 1) (Chuang et al. 2020); 0: off")
	fs.Float64Var(&cfg.MoCoMomentum, "moco-momentum", cfg.MoCoMomentum, "moco: momentum m of the key encoder")
	fs.IntVar(&cfg.MoCoQueue, "moco-queue", cfg.MoCoQueue, "moco: queue size, a multiple of --batch (0: 8 batches)")
	fs.BoolVar(&cfg.MoCoSymmetric, "moco-symmetric", cfg.MoCoSymmetric, "moco: symmetrised loss ½[ctr(q1,k2)+ctr(q2,k1)] (v3 style)")
	fs.IntVar(&cfg.Chunk, "chunk", cfg.Chunk, "logit columns per chunk of the streamed loss")
	fs.IntVar(&cfg.MicroBatch, "micro-batch", cfg.MicroBatch, "encode each worker's rows m at a time and again for the backward pass (gradient caching): activations of m rows, the gradient of the whole batch (0: one pass)")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of every random source of the run")
	fs.IntVar(&cfg.LogEvery, "log-every", cfg.LogEvery, "write a metrics line every N steps")
	fs.IntVar(&cfg.EvalEvery, "eval-every", cfg.EvalEvery, "evaluate every N steps into metrics.jsonl, in one process or on rank 0 of several workers while the others wait (0: only at the end)")
	fs.StringVar(&cfg.Out, "out", cfg.Out, "run directory: metrics.jsonl, summary.json, checkpoints/ (default runs/<UTC date-time>-<run id>, and runs/latest points at the newest)")
}

// objectiveDefaults fills the temperature defaults of the chosen objective
// for the flags the user did not set.
func objectiveDefaults(cfg *worker.Config, set map[string]bool) {
	if cfg.Objective == worker.CLIP || cfg.Objective == worker.Tri {
		return // CLIP's: τ 0.07, learned
	}
	if cfg.Objective == worker.SigLIP {
		// SigLIP's: t' = ln 10 (τ 0.1), learned, beside its bias.
		if !set["temperature"] {
			cfg.Temperature = 0.1
		}
		return
	}
	if !set["temperature"] {
		cfg.Temperature = 0.2
	}
	if !set["learn-temperature"] {
		cfg.LearnTemperature = false
	}
}

func runTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := worker.DefaultConfig()
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	trainFlags(fs, &cfg)
	noEval := fs.Bool("no-eval", false, "skip the evaluation at the end")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	workers := fs.Int("workers", 1, "worker processes on this machine: 1 trains in this process; more start an embedded coordinator and that many workers on loopback")
	threads := fs.Int("threads-per-worker", 0, "GOMAXPROCS of each worker process (default: cores / workers, at least 1)")
	maxRestarts := fs.Int("max-restarts", 0, "with --workers N: start a new worker in place of one that dies, up to this many times in the job; it joins at the next step boundary")
	cores := fs.Int("cores-per-worker", 0, "pin worker i to cores [i·C, (i+1)·C) of this machine (0: no pinning; Linux only)")
	resume := fs.String("resume", "", "continue from a checkpoint: a checkpoint directory, a directory of checkpoints, or 'latest' (in --out; without --out the run runs/latest points at)")
	fs.Int64Var(&cfg.CheckpointEvery, "checkpoint-every", cfg.CheckpointEvery, "save a checkpoint every N steps (0: only at the end and on a stop)")
	fs.IntVar(&cfg.ChecksumEvery, "checksum-every", cfg.ChecksumEvery, "compare a checksum of the parameters across workers every N steps (0: never)")
	fs.IntVar(&cfg.BucketKiB, "bucket-kib", cfg.BucketKiB, "with several workers, all-reduce the gradient in buckets of this many KiB during the backward pass (0: in one piece after it)")
	gradWireFlags(fs, &cfg)
	var cf coordinatorFlags
	cf.bindFlags(fs)
	set, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	objectiveDefaults(&cfg, set)
	logger, err := newLogger(*logFormat, stderr)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	if *workers < 1 {
		return usageError{fmt.Errorf("--workers %d: at least one worker is needed", *workers)}
	}
	if *cores < 0 {
		return usageError{fmt.Errorf("--cores-per-worker %d: must not be negative", *cores)}
	}
	if *maxRestarts < 0 {
		return usageError{fmt.Errorf("--max-restarts %d: must not be negative", *maxRestarts)}
	}
	publish, err := settleRun(ctx, &cfg, set, *resume, cf.jobID, time.Now(), logger) // runs.go
	if err != nil {
		return err
	}
	if *workers > 1 || cf.min > 1 || cf.max > 1 {
		if err := publish(); err != nil {
			return err
		}
		err := launchLocal(ctx, cfg, *workers, *threads, *cores, cf, *resume, !*noEval, *maxRestarts, logger, stdout, stderr)
		if err != nil && ctx.Err() != nil {
			fmt.Fprintf(stderr, "infonce train: %v; continue with --resume latest --out %s\n", err, cfg.Out)
			return nil
		}
		return err
	}
	if *threads > 0 {
		runtime.GOMAXPROCS(*threads)
	}
	if *cores > 0 {
		if err := affinity.PinSelf(affinity.Spread(0, *cores, runtime.NumCPU())); err != nil {
			return err
		}
	}
	data, err := worker.LoadData(cfg)
	if err != nil {
		return err
	}
	opt := worker.Options{Progress: stdout, Logger: logger, Evaluate: !*noEval, MaxBadSteps: cf.maxBadSteps, MaxSaveFailures: cf.maxSaveFailures, Overwrite: cf.overwrite}
	stopHTTP, err := cf.serveTrain(ctx, cfg, &opt, logger) // --http (http.go)
	if err != nil {
		return err
	}
	defer stopHTTP()
	if *resume != "" {
		c, err := resumeFrom(ctx, *resume, cfg.Out)
		if err != nil {
			return err
		}
		if c != nil { // --resume auto without a checkpoint starts afresh
			opt.Resume = c.Path
		}
	}
	if err := publish(); err != nil {
		return err
	}
	sum, err := worker.RunLocalData(ctx, cfg, data, opt)
	if errors.Is(err, worker.ErrStopped) {
		fmt.Fprintf(stderr, "infonce train: %v; continue with --resume latest --out %s\n", err, cfg.Out)
		return nil
	}
	if err != nil {
		return err
	}
	printSummary(stdout, sum)
	return nil
}

// startCPUProfile profiles the process into path until the returned stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func newLogger(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, usageError{fmt.Errorf("--log-format %q: use text or json", format)}
}

func pct(p *float64) string {
	if p == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.2f%%", 100**p)
}

// printProbe prints the linear probe's accuracy beside the raw pixels'; a
// data set without labels has neither (both 0: a probe that scored is at
// least at chance).
func printProbe(w io.Writer, probe, pixels float64) {
	if probe == 0 && pixels == 0 {
		fmt.Fprintln(w, "  linear probe      n/a (no labels)")
		return
	}
	fmt.Fprintf(w, "  linear probe      %s (raw pixels %s)\n", pct(&probe), pct(&pixels))
}

// printVLA prints the scores of the VLA evaluation that ev has.
func printVLA(w io.Writer, ev *worker.Evaluation) {
	if ev.ActionRecallAt5 != nil {
		fmt.Fprintf(w, "  action R@1/5/10   %s / %s / %s (chance of R@5 %s), median rank %.0f\n",
			pct(ev.ActionRecallAt1), pct(ev.ActionRecallAt5), pct(ev.ActionRecallAt10), pct(ev.ActionChanceAt5), *ev.ActionMedianRank)
		fmt.Fprintf(w, "  instruction R@1/5 %s / %s\n", pct(ev.InstructionRecallAt1), pct(ev.InstructionRecallAt5))
	}
	if ev.ActionR2 != nil {
		fmt.Fprintf(w, "  action R²         %.3f (mean over dimensions)\n", *ev.ActionR2)
	}
	if ev.TemporalKendallTau != nil {
		fmt.Fprintf(w, "  temporal τ        %.3f (Kendall, frames against closeness to the last)\n", *ev.TemporalKendallTau)
	}
	if ev.TaskZeroShotTop1 != nil {
		fmt.Fprintf(w, "  task family       zero-shot %s  linear probe %s\n", pct(ev.TaskZeroShotTop1), pct(ev.TaskProbeAccuracy))
	}
}

func printSummary(w io.Writer, s *worker.Summary) {
	fmt.Fprintf(w, "\n%s on %s: %d steps, %d samples, %d worker(s)\n", s.Objective, s.Data, s.Steps, s.Samples, s.Workers)
	fmt.Fprintf(w, "  final loss        %.4f (logit scale %.2f)\n", s.FinalLoss, s.FinalLogitScale)
	fmt.Fprintf(w, "  throughput        %.0f samples/s (train %.1f s, eval %.1f s, wall %.1f s)\n", s.SamplesPerSecond, s.TrainSeconds, s.EvalSeconds, s.WallSeconds)
	fmt.Fprintf(w, "  zero-shot         top-1 %s  top-5 %s\n", pct(s.ZeroShotTop1), pct(s.ZeroShotTop5))
	fmt.Fprintf(w, "  retrieval R@1     image→text %s  text→image %s\n", pct(s.RecallI2TAt1), pct(s.RecallT2IAt1))
	printProbe(w, s.LinearProbeAccuracy, s.PixelProbeAccuracy)
	printVLA(w, &s.Evaluation)
	fmt.Fprintf(w, "  peak RSS          %.0f MB\n", float64(s.PeakRSSBytes)/1e6)
	fmt.Fprintf(w, "  param sha256      %s\n", s.ParamSHA256)
}

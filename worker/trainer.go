package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infonce/infonce/contrastive"
	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/bpe"
	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/model"
	"github.com/infonce/infonce/optim"
	"github.com/infonce/infonce/rundir"
)

// Comm is what the training loop needs from the ranks it runs with: the
// all-gather of the objectives and the SUM all-reduce of the gradients.
type Comm[T gemm.Float] interface {
	contrastive.Collective
	AllReduce(ctx context.Context, buf []T) error
}

// Single is the Comm of a one-process run.
type Single[T gemm.Float] struct{ contrastive.Single }

// AllReduce over one rank is the identity.
func (Single[T]) AllReduce(context.Context, []T) error { return nil }

// maxLogitScale is the clamp of t = ln s: s ∈ [1, 100], as CLIP
// (1/MinTemperature).
var maxLogitScale = math.Log(1 / MinTemperature)

// ErrNonFinite reports a NaN or Inf loss or gradient.
var ErrNonFinite = errors.New("loss or gradient is not finite")

// Trainer owns one rank's model, optimizer and step buffers.
type Trainer[T gemm.Float] struct {
	Cfg Config
	// Data is what the run reads. Set is its idx data set (nil for the
	// other sources), and Train that set's training split as a source of
	// samples with named fields: the views of a step are built from its
	// samples' fields.
	Data  *Data
	Set   *dataset.Set
	Train dataset.Split

	// src is the training source of a run on a source other than an idx
	// set; its images become views through viewCLIP (the plain training
	// view), viewSimCLR (the augmented views) and viewEval.
	src                           dataset.Source
	viewCLIP, viewSimCLR, viewEva dataset.ViewConfig
	srcCaptions                   *dataset.Captioner // captions rendered from classes (folder:), or nil
	rowMeta                       []rowMeta          // the captions and labels of t.x's samples, source runs
	bad                           badSamples
	cache                         *sampleCache // decoded samples kept in memory (--data-cache-mb), or nil
	dataMu                        sync.Mutex
	dataErr                       error // the first error of drawing a step's rows
	log                           *slog.Logger
	Model                         *model.Model[T]
	Opt                           optim.Optimizer[T]
	Sched                         optim.WarmupCosine
	Sampler                       dataset.Sampler

	captioner *dataset.Captioner
	tokenizer textTokenizer
	bpe       *bpe.Tokenizer // the BPE tokenizer behind tokenizer, checkpointed; nil for bag-of-words
	tokens    [][]int32      // tokens[class*T+tmpl]

	// Obj is the objective; in holds its views of the current step.
	Obj Objective[T]
	in  LossInput[T]
	// imageViews and textView index in.Views: the views whose input is
	// the image rows in x (in that order), and the caption view (−1: none).
	imageViews []int
	textView   int
	actionView int          // the index of the action view in in.Views, or −1
	actions    *actionTable // the source's actions, when the objective has an action view
	episodes   *actionTable // the source's episodes (the actions' table, or one without actions), for nearby views
	xa         []T          // the local rows' action views
	actionRow  []float32    // fillActions' scratch row

	// per-step buffers, sized once for the largest local batch
	idx      []int
	x        []T // the image views' rows of the local samples: view after view, b×P each
	ids      []int32
	offsets  []int32
	capIDs   []int32
	groups   []int32        // the rows' ids of --mask-false-negatives when not captions
	dEmb     map[string][]T // ∂L/∂emb of each tower's encoded rows
	sideList []string       // the modalities of the model's towers (sides)
	counts   []int
	timed    timedComm[T]

	// towerCaches holds each tower's state of a micro-batched step (in the
	// order of sides), and microOff the rebased offsets of a micro-batch
	// of token rows (gradcache.go).
	towerCaches []towerCache[T]
	microOff    []int32

	red       overlapped // the gradient reduction of the step, when in flight
	gradReady func([]T)  // t.handOver, bound once
	// overlappedSteps counts the steps whose reduction overlapped the
	// backward pass.
	overlappedSteps int64

	aug     dataset.AugConfig
	pixPool *rowPool // draws a step's input rows over the threads
	// augStep, augLocal and augFrom are what pixPool draws: the rows of
	// step's local samples from row augFrom on.
	augStep     int64
	augLocal    []int
	augFrom     int
	pf          prefetch[T]
	drawing     sync.WaitGroup // drawAhead's goroutine
	prefetched  int64          // steps whose input came from the prefetch
	zeroedAhead int64          // gradient elements cleared in waits
	totalSteps  int64

	// StopRequested asks every rank to stop after the current step: the
	// request travels in the step's reduction, so all ranks stop together.
	StopRequested atomic.Bool

	// faultHook, when set, may corrupt the local gradient before the
	// reduction: tests inject NaN and Inf through it.
	faultHook func(step int64, g []T)
	// sampleHook, when set, learns the sample indices this rank
	// contributes to a step, just before the reduction.
	sampleHook func(step int64, epoch int, local []int)
	// gradHook, when set, sees the summed gradient and the global loss of
	// every step, after the reduction and before clipping.
	gradHook func(step int64, rank int, loss float64, g []T) error
	// saveHook, when set, may fail the save of a step before anything is
	// written: tests inject a full disk through it.
	saveHook func(done int64) error
}

// StepTimes is the wall-time breakdown of one step.
type StepTimes struct {
	Data      time.Duration // sampling, augmentation, captions
	Forward   time.Duration // the towers' forward passes
	Gather    time.Duration // all-gathers of embeddings, log-sum-exps and keys
	Loss      time.Duration // the objective's own computation, gathers excluded
	Backward  time.Duration // the towers' backward passes (with --micro-batch, their second forward pass too)
	Reduce    time.Duration // the gradient all-reduce, waiting included
	Optimizer time.Duration // clipping, the update, the momentum encoder
}

// Breakdown is a step-time breakdown in milliseconds, as the run files
// report it (rundir.Breakdown), with the sums the trainer keeps.
type Breakdown rundir.Breakdown

// add accumulates s into b.
func (b *Breakdown) add(s StepTimes) {
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	b.DataMS += ms(s.Data)
	b.ForwardMS += ms(s.Forward)
	b.GatherMS += ms(s.Gather)
	b.LossMS += ms(s.Loss)
	b.BackwardMS += ms(s.Backward)
	b.ReduceMS += ms(s.Reduce)
	b.OptimizerMS += ms(s.Optimizer)
	b.TotalMS += ms(s.Total())
}

// scale multiplies every field by f (to turn sums into means).
func (b Breakdown) scale(f float64) Breakdown {
	return Breakdown{b.DataMS * f, b.ForwardMS * f, b.GatherMS * f, b.LossMS * f, b.BackwardMS * f, b.ReduceMS * f, b.OptimizerMS * f, b.TotalMS * f}
}

// Total is the step's wall time.
func (s StepTimes) Total() time.Duration {
	return s.Data + s.Forward + s.Gather + s.Loss + s.Backward + s.Reduce + s.Optimizer
}

// stopwatch measures consecutive phases.
type stopwatch struct{ last time.Time }

func (w *stopwatch) start() { w.last = time.Now() }

// lap returns the time since the last lap (or start).
func (w *stopwatch) lap() time.Duration {
	now := time.Now()
	d := now.Sub(w.last)
	w.last = now
	return d
}

// timedComm is a Comm that accumulates the time spent in AllGather.
type timedComm[T gemm.Float] struct {
	Comm[T]
	gather time.Duration
}

// Shift passes a block to the right neighbour (contrastive.Shifter), timed
// as a gather.
func (c *timedComm[T]) Shift(ctx context.Context, send, recv []byte) error {
	sh, ok := c.Comm.(contrastive.Shifter)
	if !ok {
		return fmt.Errorf("the collective of %d ranks cannot pass blocks round the ring", c.Size())
	}
	start := time.Now()
	err := sh.Shift(ctx, send, recv)
	c.gather += time.Since(start)
	return err
}

func (c *timedComm[T]) AllGather(ctx context.Context, send, recv []byte, counts []int) error {
	start := time.Now()
	err := c.Comm.AllGather(ctx, send, recv, counts)
	c.gather += time.Since(start)
	return err
}

// StepStats is what one step reports.
type StepStats struct {
	Step       int64
	Epoch      int
	Loss       float64 // the global loss (summed shares)
	LogitScale float64 // s = exp(t) after the step
	LR         float64
	GradNorm   float64
	Stop       bool // some rank asked to stop after this step
	Times      StepTimes
	// BadSamples counts the samples this rank could not use so far, by
	// reason; nil while there were none.
	BadSamples map[string]int64
}

// NewTrainer builds the rank's state from the configuration: the data set,
// the model initialised from the seed, the optimizer and the objective.
func NewTrainer[T gemm.Float](cfg Config, set *dataset.Set) (*Trainer[T], error) {
	return NewTrainerData[T](cfg, &Data{Name: set.Name, Set: set}, nil)
}

// NewTrainerGrad is NewTrainer with the model's gradient buffer from grad,
// called with the length model.NewWithGrad needs; grad returning nil, or
// grad nil, allocates it as NewTrainer does. Workers keep their gradient
// in memory their peers on the machine can read (shm.SharedVector).
func NewTrainerGrad[T gemm.Float](cfg Config, set *dataset.Set, grad func(n int) ([]T, error)) (*Trainer[T], error) {
	return NewTrainerData[T](cfg, &Data{Name: set.Name, Set: set}, grad)
}

// NewTrainerData is NewTrainerGrad over any Data: an idx set or sources.
func NewTrainerData[T gemm.Float](cfg Config, data *Data, grad func(n int) ([]T, error)) (*Trainer[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Trainer[T]{Cfg: cfg, Data: data, Set: data.Set, aug: dataset.DefaultAugConfig(), log: slog.Default()}
	n := 0
	if t.Set != nil {
		t.Train = dataset.Split{Set: t.Set}
		n = t.Set.Train.N
	} else {
		if err := t.setSource(data.Train); err != nil {
			return nil, err
		}
		n = t.src.Len()
	}
	t.Sampler = dataset.Sampler{Seed: cfg.Seed, N: n, B: cfg.Batch}
	if err := t.Sampler.Validate(); err != nil {
		return nil, fmt.Errorf("--batch %d with data set %s: %w", cfg.Batch, data.Name, err)
	}
	t.totalSteps = cfg.Steps
	if t.totalSteps == 0 {
		t.totalSteps = int64(cfg.Epochs) * int64(t.Sampler.StepsPerEpoch())
	}

	obj, err := newObjective[T](cfg)
	if err != nil {
		return nil, err
	}
	t.Obj = obj
	t.textView, t.actionView = -1, -1
	for i, v := range obj.Views() {
		switch v.Tower {
		case model.ModalityImage:
			t.imageViews = append(t.imageViews, i)
		case model.ModalityText:
			if t.textView >= 0 {
				return nil, fmt.Errorf("objective %s: more than one text view", cfg.Objective)
			}
			t.textView = i
		case model.ModalityAction:
			if t.actionView >= 0 {
				return nil, fmt.Errorf("objective %s: more than one action view", cfg.Objective)
			}
			t.actionView = i
		}
	}
	t.in.Views = make([]View[T], len(obj.Views()))
	for i, v := range obj.Views() {
		t.in.Views[i].ViewSpec = v
	}
	t.in.towerIn = map[string]model.Batch[T]{}
	if cfg.ActionState && t.actionView < 0 {
		return nil, fmt.Errorf("--action-state: --objective %s has no action tower", cfg.Objective)
	}
	if t.actionView >= 0 {
		if t.Set != nil {
			return nil, fmt.Errorf("--objective %s reads actions, and --data %s has none: use a source with actions (rlds:, wds: or csv: with --csv-action-key)", cfg.Objective, cfg.Data)
		}
		var err error
		if t.actions, err = newActionTable(t.src, cfg.actionHorizon(), cfg.ActionState, func(err error) { t.bad.note(err, t.log) }); err != nil {
			return nil, fmt.Errorf("--data %s: %w", cfg.Data, err)
		}
		t.episodes = t.actions
	}
	if slices.ContainsFunc(obj.Views(), func(v ViewSpec) bool { return v.Nearby }) {
		if t.Set != nil {
			return nil, fmt.Errorf("--objective %s pairs frames of one episode, and --data %s has no episodes: use a source of episodes (rlds:, or wds: with episode and step)", cfg.Objective, cfg.Data)
		}
		if t.episodes == nil {
			var err error
			if t.episodes, err = readEpisodes(t.src, 1, false, func(err error) { t.bad.note(err, t.log) }); err != nil {
				return nil, fmt.Errorf("--data %s: %w", cfg.Data, err)
			}
		}
	}
	if k := cfg.MaxPerEpisode; k > 0 {
		// Episode-aware batches: the sampler keeps at most k samples of
		// one episode in a global batch, whatever the number of workers.
		if t.Set != nil {
			return nil, fmt.Errorf("--max-per-episode %d: --data %s has no episodes", k, cfg.Data)
		}
		if t.episodes == nil {
			var err error
			if t.episodes, err = readEpisodes(t.src, 1, false, func(err error) { t.bad.note(err, t.log) }); err != nil {
				return nil, fmt.Errorf("--data %s: %w", cfg.Data, err)
			}
		}
		t.Sampler.Groups, t.Sampler.MaxPerGroup = t.episodes.episode, k
		if err := t.Sampler.Validate(); err != nil {
			return nil, fmt.Errorf("--max-per-episode: %w", err)
		}
	}
	if cfg.SceneNegatives {
		if err := t.bundleScenes(); err != nil {
			return nil, err
		}
	}
	t.dEmb = map[string][]T{}

	mc, err := t.modelConfig()
	if err != nil {
		return nil, err
	}
	var g []T
	if grad != nil {
		n, err := model.NumGrad(mc)
		if err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
		if g, err = grad(n); err != nil {
			return nil, fmt.Errorf("gradient buffer: %w", err)
		}
	}
	var m *model.Model[T]
	m, err = model.NewWithGrad[T](mc, cfg.Seed, g)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	t.Model = m
	groups := make([]optim.Group, len(m.P.Segments))
	for i, s := range m.P.Segments {
		groups[i] = optim.Group{Name: s.Name, Off: s.Off, Len: s.Len, NoDecay: s.NoDecay}
	}
	t.Opt, err = optim.New[T](cfg.Optimizer, len(m.P.W), groups, cfg.WD)
	if err != nil {
		return nil, fmt.Errorf("--optimizer: %w", err)
	}
	t.Sched = optim.WarmupCosine{Base: cfg.LR, Min: cfg.MinLR, Warmup: cfg.Warmup, Total: t.totalSteps}
	if cfg.Schedule == "constant" {
		t.Sched.Min = cfg.LR
	}

	if o, ok := obj.(initializer[T]); ok {
		if err := o.Init(m); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// modelConfig derives the model's shape from the run's configuration and
// the data set, and prepares the captions of a CLIP run.
func (t *Trainer[T]) modelConfig() (model.Config, error) {
	cfg := t.Cfg
	mc := model.DefaultConfig()
	mc.ImageIn = t.pixels()
	mc.ImageHidden = slices.Clone(cfg.ImageHidden)
	mc.Dim = cfg.Dim
	mc.TextHidden = cfg.TextHidden
	mc.Activation = cfg.Activation
	mc.LayerNorm = cfg.LayerNorm
	mc.InitLogitScale = math.Log(1 / cfg.Temperature)
	if o, ok := t.Obj.(biased); ok {
		mc.LogitBias, mc.InitLogitBias = true, o.InitLogitBias()
	}
	if o, ok := t.Obj.(fuser); ok {
		mc.Fusion, mc.FusionHidden = o.Fusion()
	}
	mc.ImageTower = cfg.ImageTower
	mc.TextTower = cfg.TextTower
	mc.CNN, mc.ViT, mc.Transformer = cfg.CNN, cfg.ViT, cfg.TextTransformer
	if r := cfg.ViTMLPRatio; r > 0 {
		w := mc.ViT.Width
		if w == 0 {
			probe := mc
			probe.ImageTower, probe.ImageIn = model.TowerViT, max(mc.ImageIn, 1)
			w = probe.WithDefaults().ViT.Width
		}
		mc.ViT.MLP = int(r * float64(w))
	}
	if t.Set != nil {
		mc.ImageShape = model.ImageShape{Channels: 1, Height: t.Set.Train.H, Width: t.Set.Train.W}
	} else {
		mc.ImageShape = model.ImageShape{Channels: t.viewCLIP.Channels, Height: t.viewCLIP.Size, Width: t.viewCLIP.Size}
	}
	mc.TextVocab = 0
	switch {
	case t.textView < 0:
	case t.Set != nil:
		t.captioner = dataset.NewCaptioner(t.Set)
		t.tokenizer = dataset.NewTokenizer(t.captioner.Corpus())
		t.cacheTemplateTokens(len(t.Set.Classes))
	case t.srcCaptions != nil:
		// Captions rendered from the source's classes, drawn per epoch
		// as for an idx set, over the templates' own vocabulary.
		t.captioner = t.srcCaptions
		t.tokenizer = dataset.NewTokenizer(t.captioner.Corpus())
		t.cacheTemplateTokens(len(classesOf(t.src)))
	default:
		// Free text: a hashed vocabulary needs no pass over the data.
		t.tokenizer = dataset.NewHashTokenizer(cfg.DataOptions.vocabSize())
	}
	if t.actions != nil {
		mc.ActionIn, mc.ActionTower = t.actions.rowLen(), cfg.ActionTower
		mc.ActionHidden = slices.Clone(cfg.ActionHidden)
		if cfg.ActionTower == model.TowerTemporal {
			mc.ActionTemporal = model.TemporalConfig{Horizon: t.actions.H, State: t.actions.S, Width: cfg.ActionWidth, Kernel: cfg.ActionKernel}
		}
	}
	if t.textView >= 0 && mc.WithDefaults().TextTower == model.TowerTransformer {
		if err := t.setBPE(&mc); err != nil {
			return mc, err
		}
		if t.captioner != nil {
			t.cacheTemplateTokens(len(t.tokens) / t.captioner.NumTemplates())
		}
	}
	if t.tokenizer != nil {
		mc.TextVocab = t.tokenizer.Vocab()
	}
	return mc, nil
}

// cacheTemplateTokens tokenizes every (class, template) caption once.
func (t *Trainer[T]) cacheTemplateTokens(classes int) {
	nT := t.captioner.NumTemplates()
	t.tokens = make([][]int32, classes*nT)
	for c := range classes {
		for m := range nT {
			t.tokens[c*nT+m] = t.tokenizer.Encode(t.captioner.Text(c, m), nil)
		}
	}
}

// BadSamples returns the samples this rank could not use, by reason.
func (t *Trainer[T]) BadSamples() map[string]int64 { return t.bad.counts() }

// TotalSteps is the number of optimizer steps of the run.
func (t *Trainer[T]) TotalSteps() int64 { return t.totalSteps }

// Step runs global step `step` on rank `rank` of `comm`'s ranks (DESIGN's
// steps 1 to 7) and returns its statistics. A non-finite loss or gradient
// leaves the whole training state untouched (parameters, optimizer, MoCo's
// queue) and returns ErrNonFinite with the step's statistics, Stop
// included; every rank of the ring sees the same summed values and so
// returns the same.
func (t *Trainer[T]) Step(ctx context.Context, comm Comm[T], step int64) (StepStats, error) {
	var sw stopwatch
	sw.start()
	var times StepTimes
	raw := comm
	t.timed.Comm, t.timed.gather = comm, 0
	comm = &t.timed
	K, k := comm.Size(), comm.Rank()
	B := t.Cfg.Batch
	if len(t.counts) != K {
		t.counts = dataset.Counts(B, K)
	}
	counts := t.counts
	lo, hi := dataset.Shard(B, K, k)
	b := hi - lo
	epoch, idx := t.Sampler.Batch(step, t.idx)
	t.idx = idx
	local := idx[lo:hi]
	t.fillInput(step, K, k, local)
	t.startPrefetch(step+1, K, k, lo, hi)

	p := t.Model.P
	t.startZeroGrad(K)
	defer t.finishZeroGrad()
	in := &t.in
	in.D, in.Counts, in.Step = t.Cfg.Dim, counts, step
	in.Scale = T(math.Exp(float64(p.W[t.Model.LogitScale])))
	if t.Model.LogitBias >= 0 {
		in.Bias = p.W[t.Model.LogitBias]
	}
	// 1.–4. Sample, encode, gather, and the loss with its gradient with
	// respect to the local embeddings.
	if err := t.takeDataErr(); err != nil {
		return StepStats{}, fmt.Errorf("step %d: data: %w", step, err)
	}
	if t.Set == nil {
		if err := t.bad.check(t.Cfg.DataOptions.maxBadFraction()); err != nil {
			return StepStats{}, fmt.Errorf("step %d: %w", step, err)
		}
	}
	if err := t.buildViews(epoch, local); err != nil {
		return StepStats{}, fmt.Errorf("step %d: data: %w", step, err)
	}
	times.Data = sw.lap()
	if err := t.encode(b); err != nil {
		return StepStats{}, fmt.Errorf("step %d: %w", step, err)
	}
	if e, ok := t.Obj.(viewEncoder[T]); ok {
		if err := e.EncodeViews(in); err != nil {
			return StepStats{}, fmt.Errorf("step %d: %s: %w", step, t.Cfg.Objective, err)
		}
	}
	times.Forward = sw.lap()
	res, err := t.Obj.Loss(ctx, comm, in)
	if err != nil {
		return StepStats{}, fmt.Errorf("step %d: %s loss: %w", step, t.Cfg.Objective, err)
	}
	times.Loss = sw.lap()
	t.finishZeroGrad() // the backward pass accumulates into G from here
	if t.Cfg.LearnTemperature {
		p.G[t.Model.LogitScale] = res.DT
	} else {
		p.G[t.Model.LogitScale] = 0
	}
	if t.Model.LogitBias >= 0 {
		p.G[t.Model.LogitBias] = res.DB
	}
	if o, ok := t.Obj.(paramGrader[T]); ok {
		o.AddParamGrad(p.G)
	}
	if t.faultHook != nil {
		t.faultHook(step, p.G)
	}

	// 5. Backward, and 6. Σ over ranks of the gradients, of the loss shares
	// and of the stop requests, so that every rank learns the global loss
	// and whether any rank asked to stop after this step. When the ranks'
	// comm can start reductions in the background, the gradient goes in
	// buckets as the backward pass finishes them, overlapping the rest of
	// the backward pass; the loss pair goes first.
	stopReq := t.StopRequested.Load()
	overlap := t.startReduce(ctx, raw, res.Loss, stopReq)
	var ready func([]T)
	if overlap {
		ready = t.gradReady
	}
	if err := t.backward(ready); err != nil {
		return StepStats{}, t.abandon(overlap, fmt.Errorf("step %d: %w", step, err))
	}
	times.Backward = sw.lap()

	if t.sampleHook != nil {
		t.sampleHook(step, epoch, local)
	}
	var loss float64
	var stop bool
	if overlap {
		loss, stop, err = t.finishReduce()
	} else {
		loss, stop, err = t.reduce(ctx, comm, res.Loss, stopReq)
	}
	if err != nil {
		return StepStats{}, fmt.Errorf("step %d: all-reduce: %w", step, err)
	}
	if t.gradHook != nil {
		if err := t.gradHook(step, k, loss, p.G); err != nil {
			return StepStats{}, err
		}
	}
	// The summed loss and gradient are identical on every rank, so every
	// rank takes the same decision here: a non-finite step is skipped
	// whole (no update, no enqueue), and the caller moves on to the next
	// step or stops the run.
	// The global gradient norm is finite exactly when every gradient is
	// (a sum of squares of float32 values cannot overflow float64), and
	// clipping leaves a non-finite gradient as it is.
	norm := optim.ClipGlobalNorm(p.G, t.Cfg.ClipNorm)
	if !finite(loss) || !finite(norm) {
		return StepStats{Step: step, Epoch: epoch, Loss: loss, Stop: stop}, fmt.Errorf("step %d: %w (loss %g, gradient norm %g)", step, ErrNonFinite, loss, norm)
	}
	// MoCo's queue takes this step's keys of every rank. It is the last
	// collective of the step: a step that fails anywhere before here
	// leaves the state as it was, so that it can run again.
	if c, ok := t.Obj.(committer[T]); ok {
		if err := c.Commit(ctx, comm, in); err != nil {
			return StepStats{}, fmt.Errorf("step %d: %w", step, err)
		}
	}
	times.Reduce = sw.lap()

	// 7. The identical update on every rank.
	lr := t.Sched.At(step)
	if err := t.Opt.Step(p.W, p.G, T(lr)); err != nil {
		return StepStats{}, fmt.Errorf("step %d: optimizer: %w", step, err)
	}
	if !t.Cfg.LearnTemperature {
		p.W[t.Model.LogitScale] = T(math.Log(1 / t.Cfg.Temperature))
	}
	p.W[t.Model.LogitScale] = T(math.Min(math.Max(float64(p.W[t.Model.LogitScale]), 0), maxLogitScale))
	if u, ok := t.Obj.(updater[T]); ok {
		u.AfterUpdate(p.W)
	}
	times.Optimizer = sw.lap()
	// The gathers ran inside the loss and the reduction phases.
	times.Gather = t.timed.gather
	times.Loss -= min(times.Loss, t.timed.gather)
	st := StepStats{
		Step: step, Epoch: epoch, Loss: loss, LR: lr, GradNorm: norm, Stop: stop, Times: times,
		LogitScale: math.Exp(float64(p.W[t.Model.LogitScale])),
	}
	if t.Set == nil && t.bad.any() {
		st.BadSamples = t.bad.counts()
	}
	return st, nil
}

// reduce sums the gradient buffer, the loss shares and the stop requests
// over the ranks (in one all-reduce, the pair in the gradient buffer's
// tail) and returns the global loss and whether any rank asked to stop.
func (t *Trainer[T]) reduce(ctx context.Context, comm Comm[T], lossShare T, stop bool) (float64, bool, error) {
	if comm.Size() == 1 {
		return float64(lossShare), stop, nil
	}
	// One all-reduce: the pair rides in the room model.New leaves after
	// the gradient.
	n := len(t.Model.P.G)
	buf := t.Model.P.G[:n+model.GradTail]
	buf[n], buf[n+1] = lossShare, 0
	if stop {
		buf[n+1] = 1
	}
	if err := comm.AllReduce(ctx, buf); err != nil {
		return 0, false, err
	}
	return float64(buf[n]), buf[n+1] > 0, nil
}

// pixels is the length of one image row: H·W grey pixels of an idx set,
// or C·S·S of a source's views.
func (t *Trainer[T]) pixels() int {
	if t.Set != nil {
		return t.Set.Train.H * t.Set.Train.W
	}
	return t.viewCLIP.ViewLen()
}

// inputRows is the number of image rows a step draws for b local samples:
// one per image view and sample.
func (t *Trainer[T]) inputRows(b int) int { return len(t.imageViews) * b }

// fillInput writes the image rows of step's local samples into t.x: the
// rows drawn ahead by the prefetch when it drew this very step for this
// ring, and the rest drawn here, split over the trainer's threads.
func (t *Trainer[T]) fillInput(step int64, K, k int, local []int) {
	from, ok := t.takePrefetch(step, K, k, local)
	if !ok {
		t.x = grow(t.x, t.inputRows(len(local))*t.pixels())
		if t.Set == nil {
			t.rowMeta = grow(t.rowMeta, len(local))
		}
	}
	if from == len(local) {
		return
	}
	t.augStep, t.augLocal, t.augFrom = step, local, from
	if t.pixPool == nil {
		t.pixPool = newRowPool(func(lo, hi int) {
			t.drawRows(t.x, t.rowMeta, t.augStep, t.augLocal, t.augFrom+lo, t.augFrom+hi)
		})
	}
	t.pixPool.run(len(local) - from)
}

// drawRows writes the input of local samples [lo, hi) of step into dst, a
// pure function of (seed, step, sample): the rows of image view v of the
// objective from row v·len(local) on, each built from the sample's image
// field: scaled to [0, 1], or the augmented view its ViewSpec.Augment
// names.
func (t *Trainer[T]) drawRows(dst []T, meta []rowMeta, step int64, local []int, lo, hi int) {
	if t.Set == nil {
		t.drawSourceRows(dst, meta, step, local, lo, hi)
		return
	}
	P := t.pixels()
	H, W := t.Set.Train.H, t.Set.Train.W
	b := len(local)
	var s dataset.Sample
	for r := lo; r < hi; r++ {
		i := local[r]
		// A Split's samples are views of the set's memory, always whole.
		_ = t.Train.Sample(context.Background(), i, &s)
		src := s.Image.Pix
		for v, vi := range t.imageViews {
			row := dst[(v*b+r)*P : (v*b+r+1)*P]
			if a := t.in.Views[vi].Augment; a > 0 {
				dataset.Augment(t.aug, t.Cfg.Seed, step, i, a-1, src, H, W, row)
			} else {
				dataset.Pixels(src, row)
			}
		}
	}
}

// buildViews sets the inputs of the objective's views for the local
// samples of the step: the image rows drawn into t.x (fillInput), and the
// captions.
func (t *Trainer[T]) buildViews(epoch int, local []int) error {
	b, P := len(local), t.pixels()
	for v, vi := range t.imageViews {
		t.in.Views[vi].In = model.Rows(t.x[v*b*P:(v+1)*b*P], b)
	}
	if len(t.imageViews) > 0 {
		t.in.towerIn[model.ModalityImage] = model.Rows(t.x[:len(t.imageViews)*b*P], len(t.imageViews)*b)
	}
	if t.textView >= 0 {
		if t.Set != nil {
			t.fillCaptions(epoch, local)
		} else if err := t.fillSourceCaptions(epoch, local); err != nil {
			return err
		}
		v := &t.in.Views[t.textView]
		v.In = model.Bags[T](t.ids, t.offsets, b)
		v.Groups = t.capIDs
		if f := t.Cfg.MaskField; f != "" && f != MaskCaption {
			if err := t.maskGroups(local); err != nil {
				return err
			}
			v.Groups = t.groups
		}
		t.in.towerIn[model.ModalityText] = v.In
	}
	if t.actionView >= 0 {
		t.fillActions(local)
		v := &t.in.Views[t.actionView]
		v.In = model.Rows(t.xa, b)
		t.in.towerIn[model.ModalityAction] = v.In
	}
	return nil
}

// encode runs each tower's forward pass once over the rows of its encoded
// views (they come first among the tower's views, so their rows are one
// run), and hands each view its embeddings and its part of the tower's
// gradient buffer. With --micro-batch m, a tower with more than m rows
// encodes them m at a time and keeps only the embeddings (gradcache.go).
func (t *Trainer[T]) encode(b int) error {
	d := t.Cfg.Dim
	sides := t.sides()
	if len(t.towerCaches) != len(sides) {
		t.towerCaches = make([]towerCache[T], len(sides))
	}
	for si, side := range sides {
		t.towerCaches[si].in = model.Batch[T]{}
		views := t.towerViews(side)
		n := 0
		for _, vi := range views {
			if !t.in.Views[vi].InputOnly {
				n++
			}
		}
		if n == 0 {
			continue
		}
		in := t.in.towerIn[side]
		if in.X != nil {
			w := len(in.X) / max(in.N, 1) // the tower's row width
			in.X = in.X[:n*b*w]
		}
		in.N = n * b
		var emb []T
		var err error
		if m := t.Cfg.MicroBatch; m > 0 && in.N > m {
			c := &t.towerCaches[si]
			c.in = in
			emb, err = encodeMicro(t.tower(side), in, m, d, &c.emb, &t.microOff)
		} else {
			emb, err = t.tower(side).Forward(in)
		}
		if err != nil {
			return fmt.Errorf("%s tower: %w", side, err)
		}
		t.dEmb[side] = grow(t.dEmb[side], n*b*d)
		for j, vi := range views[:n] {
			v := &t.in.Views[vi]
			v.Emb = emb[j*b*d : (j+1)*b*d]
			v.DEmb = t.dEmb[side][j*b*d : (j+1)*b*d]
		}
	}
	return nil
}

// backward runs the towers' backward passes with the gradients the
// objective wrote, the last tower of the buffer first: the gradients then
// come in one run of adjacent slices from the top of the buffer down
// (Model.SetGradReady; ready is the hook armed for an overlapped
// reduction, or nil). A tower encoded in micro-batches encodes each of
// them again and backpropagates its slice (gradcache.go).
func (t *Trainer[T]) backward(ready func([]T)) error {
	sides := t.sides()
	for i := len(sides) - 1; i >= 0; i-- {
		side := sides[i]
		g := t.dEmb[side]
		if g == nil {
			continue
		}
		if c := &t.towerCaches[i]; c.in.N > 0 {
			if err := backwardMicro(t.tower(side), c.in, g[:c.in.N*t.Cfg.Dim], t.Cfg.MicroBatch, t.Cfg.Dim, ready, &t.microOff); err != nil {
				return fmt.Errorf("%s backward: %w", side, err)
			}
			continue
		}
		if err := t.tower(side).Backward(g); err != nil {
			return fmt.Errorf("%s backward: %w", side, err)
		}
	}
	return nil
}

// sides lists the modalities of the model's towers in buffer order (made
// once: the step must not allocate).
func (t *Trainer[T]) sides() []string {
	if t.sideList == nil {
		t.sideList = []string{model.ModalityImage}
		if t.Model.Text != nil {
			t.sideList = append(t.sideList, model.ModalityText)
		}
		if t.Model.Action != nil {
			t.sideList = append(t.sideList, model.ModalityAction)
		}
	}
	return t.sideList
}

func (t *Trainer[T]) tower(side string) model.Tower[T] {
	switch side {
	case model.ModalityText:
		return t.Model.Text
	case model.ModalityAction:
		return t.Model.Action
	}
	return t.Model.Image
}

// towerViews lists the indices of the views of a tower, in order.
func (t *Trainer[T]) towerViews(side string) []int {
	if side == model.ModalityAction {
		if t.actionView < 0 {
			return nil
		}
		return []int{t.actionView}
	}
	if side == model.ModalityText {
		if t.textView < 0 {
			return nil
		}
		return []int{t.textView}
	}
	return t.imageViews
}

// Close stops the trainer's helper goroutines.
func (t *Trainer[T]) Close() {
	t.pf.mu.Lock()
	t.pf.active = false
	t.pf.mu.Unlock()
	t.drawing.Wait()
	if t.pixPool != nil {
		t.pixPool.close()
	}
}

// fillCaptions builds the embedding-bag input of the local captions from
// the samples' label field: one template per sample, a pure function of
// (seed, epoch, sample).
func (t *Trainer[T]) fillCaptions(epoch int, local []int) {
	nT := t.captioner.NumTemplates()
	t.ids = t.ids[:0]
	t.offsets = t.offsets[:0]
	t.capIDs = t.capIDs[:0]
	var s dataset.Sample
	for _, i := range local {
		_ = t.Train.Sample(context.Background(), i, &s)
		c := s.Label
		m := t.captioner.Pick(t.Cfg.Seed, epoch, i)
		t.offsets = append(t.offsets, int32(len(t.ids)))
		t.ids = append(t.ids, t.tokens[c*nT+m]...)
		t.capIDs = append(t.capIDs, t.captioner.ID(c, m))
	}
}

func grow[E any](x []E, n int) []E {
	if cap(x) < n {
		return make([]E, n)
	}
	return x[:n]
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func allFinite[T gemm.Float](x []T) bool {
	for _, v := range x {
		if v-v != 0 {
			return false
		}
	}
	return true
}

package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/infonce/infonce/contrastive"
	"github.com/infonce/infonce/dataset"
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

// maxLogitScale is the clamp of t = ln s: s ∈ [1, 100], as CLIP.
var maxLogitScale = math.Log(100)

// ErrNonFinite reports a NaN or Inf loss or gradient.
var ErrNonFinite = errors.New("loss or gradient is not finite")

// Trainer owns one rank's model, optimizer and step buffers.
type Trainer[T gemm.Float] struct {
	Cfg     Config
	Set     *dataset.Set
	Model   *model.Model[T]
	Opt     optim.Optimizer[T]
	Sched   optim.WarmupCosine
	Sampler dataset.Sampler

	captioner *dataset.Captioner
	tokenizer *dataset.Tokenizer
	tokens    [][]int32 // tokens[class*T+tmpl]

	clip *contrastive.CLIP[T]
	ntx  *contrastive.NTXent[T]
	moco *contrastive.MoCo[T]
	key  *model.Model[T] // MoCo's momentum encoder θ_k
	keyW []T

	// per-step buffers, sized once for the largest local batch
	idx      []int
	x        []T // local images: b×P rows, or 2b×P (view 1 rows, then view 2 rows)
	ids      []int32
	offsets  []int32
	capIDs   []int32
	du, dv   []T
	dq       []T
	counts   []int
	timed    timedComm[T]
	mocoK2   []T
	mocoRows int // rows of ∂L/∂q in dq

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
	prefetched  int64 // steps whose input came from the prefetch
	zeroedAhead int64 // gradient elements cleared in waits
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
}

// StepTimes is the wall-time breakdown of one step.
type StepTimes struct {
	Data      time.Duration // sampling, augmentation, captions
	Forward   time.Duration // the towers' forward passes
	Gather    time.Duration // all-gathers of embeddings, log-sum-exps and keys
	Loss      time.Duration // the objective's own computation, gathers excluded
	Backward  time.Duration // the towers' backward passes
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
}

// NewTrainer builds the rank's state from the configuration: the data set,
// the model initialised from the seed, the optimizer and the objective.
func NewTrainer[T gemm.Float](cfg Config, set *dataset.Set) (*Trainer[T], error) {
	return NewTrainerGrad[T](cfg, set, nil)
}

// NewTrainerGrad is NewTrainer with the model's gradient buffer from grad,
// called with the length model.NewWithGrad needs; grad returning nil, or
// grad nil, allocates it as NewTrainer does. Workers keep their gradient
// in memory their peers on the machine can read (allreduce.SharedVector).
func NewTrainerGrad[T gemm.Float](cfg Config, set *dataset.Set, grad func(n int) ([]T, error)) (*Trainer[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Trainer[T]{Cfg: cfg, Set: set, aug: dataset.DefaultAugConfig()}
	t.Sampler = dataset.Sampler{Seed: cfg.Seed, N: set.Train.N, B: cfg.Batch}
	if err := t.Sampler.Validate(); err != nil {
		return nil, fmt.Errorf("--batch %d with data set %s: %w", cfg.Batch, set.Name, err)
	}
	t.totalSteps = cfg.Steps
	if t.totalSteps == 0 {
		t.totalSteps = int64(cfg.Epochs) * int64(t.Sampler.StepsPerEpoch())
	}

	mc := t.modelConfig()
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
	m, err := model.NewWithGrad[T](mc, cfg.Seed, g)
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

	switch cfg.Objective {
	case CLIP:
		t.clip = &contrastive.CLIP[T]{Chunk: cfg.Chunk, MaskFalseNegatives: cfg.MaskFalseNegatives}
	case SimCLR:
		t.ntx = &contrastive.NTXent[T]{Chunk: cfg.Chunk}
	case MoCo:
		t.keyW = slices.Clone(m.P.W)
		t.key, err = model.NewWithParams[T](mc, t.keyW)
		if err != nil {
			return nil, fmt.Errorf("moco key encoder: %w", err)
		}
		q := contrastive.NewQueue[T](cfg.moCoQueue(), cfg.Dim, cfg.Seed^0x9e3779b97f4a7c15)
		t.moco = &contrastive.MoCo[T]{Queue: q, Symmetric: cfg.MoCoSymmetric, Chunk: cfg.Chunk}
	}
	return t, nil
}

// modelConfig derives the model's shape from the run's configuration and
// the data set, and prepares the captions of a CLIP run.
func (t *Trainer[T]) modelConfig() model.Config {
	cfg, set := t.Cfg, t.Set
	mc := model.DefaultConfig()
	mc.ImageIn = set.Train.H * set.Train.W
	mc.ImageHidden = slices.Clone(cfg.ImageHidden)
	mc.Dim = cfg.Dim
	mc.TextHidden = cfg.TextHidden
	mc.Activation = cfg.Activation
	mc.LayerNorm = cfg.LayerNorm
	mc.InitLogitScale = math.Log(1 / cfg.Temperature)
	mc.TextVocab = 0
	if cfg.Objective == CLIP {
		t.captioner = dataset.NewCaptioner(set)
		t.tokenizer = dataset.NewTokenizer(t.captioner.Corpus())
		mc.TextVocab = t.tokenizer.Vocab()
		nT := t.captioner.NumTemplates()
		t.tokens = make([][]int32, len(set.Classes)*nT)
		for c := range set.Classes {
			for m := 0; m < nT; m++ {
				t.tokens[c*nT+m] = t.tokenizer.Encode(t.captioner.Text(c, m), nil)
			}
		}
	}
	return mc
}

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
	d := t.Cfg.Dim
	var res struct {
		Loss, DT T
	}
	s := T(math.Exp(float64(p.W[t.Model.LogitScale])))
	// 1.–4. Sample, encode, gather, and the loss with its gradient with
	// respect to the local embeddings.
	switch t.Cfg.Objective {
	case CLIP:
		t.fillCaptions(epoch, local)
		times.Data = sw.lap()
		u, err := t.Model.Image.Forward(t.x[:b*t.pixels()], b)
		if err != nil {
			return StepStats{}, fmt.Errorf("step %d: image tower: %w", step, err)
		}
		v, err := t.Model.Text.Forward(t.ids, t.offsets, b)
		if err != nil {
			return StepStats{}, fmt.Errorf("step %d: text tower: %w", step, err)
		}
		t.du = grow(t.du, b*d)
		t.dv = grow(t.dv, b*d)
		times.Forward = sw.lap()
		r, err := t.clip.Compute(ctx, comm, contrastive.CLIPInput[T]{
			U: u, V: v, D: d, Counts: counts, Scale: s, IDs: t.capIDs, DU: t.du, DV: t.dv,
		})
		if err != nil {
			return StepStats{}, fmt.Errorf("step %d: clip loss: %w", step, err)
		}
		res.Loss, res.DT = r.Loss, r.DT
	case SimCLR:
		times.Data = sw.lap()
		z, err := t.Model.Image.Forward(t.x[:2*b*t.pixels()], 2*b)
		if err != nil {
			return StepStats{}, fmt.Errorf("step %d: image tower: %w", step, err)
		}
		t.du = grow(t.du, 2*b*d)
		times.Forward = sw.lap()
		r, err := t.ntx.Compute(ctx, comm, contrastive.NTXentInput[T]{
			Z1: z[:b*d], Z2: z[b*d : 2*b*d], D: d, Counts: counts, Scale: s, DZ1: t.du[:b*d], DZ2: t.du[b*d : 2*b*d],
		})
		if err != nil {
			return StepStats{}, fmt.Errorf("step %d: nt-xent loss: %w", step, err)
		}
		res.Loss, res.DT = r.Loss, r.DT
	case MoCo:
		r, err := t.mocoForwardLoss(ctx, comm, step, local, b, counts, s, &sw, &times)
		if err != nil {
			return StepStats{}, err
		}
		res.Loss, res.DT = r.Loss, r.DT
	}
	times.Loss = sw.lap()
	t.finishZeroGrad() // the backward pass accumulates into G from here
	if t.Cfg.LearnTemperature {
		p.G[t.Model.LogitScale] = res.DT
	} else {
		p.G[t.Model.LogitScale] = 0
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
	switch t.Cfg.Objective {
	case CLIP:
		// The text tower first: the gradients then come in one run of
		// adjacent slices from the top of the buffer down (Model.SetGradReady).
		if err := t.Model.Text.Backward(t.dv); err != nil {
			return StepStats{}, t.abandon(overlap, fmt.Errorf("step %d: text backward: %w", step, err))
		}
		if err := t.Model.Image.Backward(t.du); err != nil {
			return StepStats{}, t.abandon(overlap, fmt.Errorf("step %d: image backward: %w", step, err))
		}
	case SimCLR:
		if err := t.Model.Image.Backward(t.du[:2*b*d]); err != nil {
			return StepStats{}, t.abandon(overlap, fmt.Errorf("step %d: image backward: %w", step, err))
		}
	case MoCo:
		if err := t.Model.Image.Backward(t.dq[:t.mocoRows*d]); err != nil {
			return StepStats{}, t.abandon(overlap, fmt.Errorf("step %d: query backward: %w", step, err))
		}
	}
	times.Backward = sw.lap()

	if t.sampleHook != nil {
		t.sampleHook(step, epoch, local)
	}
	var loss float64
	var stop bool
	var err error
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
	if t.moco != nil {
		if err := t.moco.Enqueue(ctx, comm, t.mocoKeys(), d, counts); err != nil {
			return StepStats{}, fmt.Errorf("step %d: moco enqueue: %w", step, err)
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
	if t.moco != nil {
		// θ_k ← m·θ_k + (1−m)·θ_q with the updated θ_q: the keys of the
		// next step come from it, as in MoCo's update before each forward.
		contrastive.MomentumUpdate(t.keyW, p.W, T(t.Cfg.MoCoMomentum))
	}
	times.Optimizer = sw.lap()
	// The gathers ran inside the loss and the reduction phases.
	times.Gather = t.timed.gather
	times.Loss -= min(times.Loss, t.timed.gather)
	return StepStats{
		Step: step, Epoch: epoch, Loss: loss, LR: lr, GradNorm: norm, Stop: stop, Times: times,
		LogitScale: math.Exp(float64(p.W[t.Model.LogitScale])),
	}, nil
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

func (t *Trainer[T]) pixels() int { return t.Set.Train.H * t.Set.Train.W }

// inputRows is the number of image rows a step draws for b local samples:
// one per sample for CLIP, two views per sample for SimCLR and MoCo.
func (t *Trainer[T]) inputRows(b int) int {
	if t.Cfg.Objective == CLIP {
		return b
	}
	return 2 * b
}

// fillInput writes the image rows of step's local samples into t.x: the
// rows drawn ahead by the prefetch when it drew this very step for this
// ring, and the rest drawn here, split over the trainer's threads.
func (t *Trainer[T]) fillInput(step int64, K, k int, local []int) {
	from, ok := t.takePrefetch(step, K, k, local)
	if !ok {
		t.x = grow(t.x, t.inputRows(len(local))*t.pixels())
	}
	if from == len(local) {
		return
	}
	t.augStep, t.augLocal, t.augFrom = step, local, from
	if t.pixPool == nil {
		t.pixPool = newRowPool(func(lo, hi int) {
			t.drawRows(t.x, t.augStep, t.augLocal, t.augFrom+lo, t.augFrom+hi)
		})
	}
	t.pixPool.run(len(local) - from)
}

// drawRows writes the input of local samples [lo, hi) of step into dst, a
// pure function of (seed, step, sample): for CLIP the image scaled to
// [0, 1] in row r; for SimCLR and MoCo two augmented views, view 1 in row
// r and view 2 in row len(local)+r.
func (t *Trainer[T]) drawRows(dst []T, step int64, local []int, lo, hi int) {
	P := t.pixels()
	if t.Cfg.Objective == CLIP {
		for r := lo; r < hi; r++ {
			i := local[r]
			dataset.Pixels(t.Set.Train.Pixels[i*P:(i+1)*P], dst[r*P:(r+1)*P])
		}
		return
	}
	H, W := t.Set.Train.H, t.Set.Train.W
	b := len(local)
	for r := lo; r < hi; r++ {
		i := local[r]
		src := t.Set.Train.Pixels[i*P : (i+1)*P]
		dataset.Augment(t.aug, t.Cfg.Seed, step, i, 0, src, H, W, dst[r*P:(r+1)*P])
		dataset.Augment(t.aug, t.Cfg.Seed, step, i, 1, src, H, W, dst[(b+r)*P:(b+r+1)*P])
	}
}

// Close stops the trainer's helper goroutines.
func (t *Trainer[T]) Close() {
	if t.pixPool != nil {
		t.pixPool.close()
	}
}

// fillCaptions builds the embedding-bag input of the local captions: one
// template per sample, a pure function of (seed, epoch, sample).
func (t *Trainer[T]) fillCaptions(epoch int, local []int) {
	nT := t.captioner.NumTemplates()
	t.ids = t.ids[:0]
	t.offsets = t.offsets[:0]
	t.capIDs = t.capIDs[:0]
	for _, i := range local {
		c := int(t.Set.Train.Labels[i])
		m := t.captioner.Pick(t.Cfg.Seed, epoch, i)
		t.offsets = append(t.offsets, int32(len(t.ids)))
		t.ids = append(t.ids, t.tokens[c*nT+m]...)
		t.capIDs = append(t.capIDs, t.captioner.ID(c, m))
	}
}

func grow[T gemm.Float](x []T, n int) []T {
	if cap(x) < n {
		return make([]T, n)
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

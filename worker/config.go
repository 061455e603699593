package worker

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/contrastive"
	"github.com/infonce/infonce/model"
)

// Objectives accepted by Config.Objective.
const (
	CLIP   = "clip"
	SimCLR = "simclr"
	MoCo   = "moco"
)

// The id fields of --mask-false-negatives.
const (
	MaskCaption = "caption"
	MaskLabel   = "label"
	MaskTask    = "task"
	MaskEpisode = "episode"
)

// The range of the temperature τ: the logit scale s = exp(t) = 1/τ is
// clamped to [1, 100] (t to [0, ln 100]) after every step.
const (
	MinTemperature = 0.01
	MaxTemperature = 1.0
)

// Config is everything that defines a training run. Two ranks of one run
// must agree on every field except Out; Fingerprint summarises the fields
// that shape the computation.
type Config struct {
	Objective string `json:"objective"` // clip, simclr or moco
	Data      string `json:"data"`      // mnist, idx:DIR, or any spec of dataset.Open
	Classes   string `json:"classes,omitempty"`
	// DataOptions are the settings of the data beyond its spec.
	DataOptions DataOptions `json:"data_options,omitzero"`

	Epochs int   `json:"epochs"` // used when Steps is 0
	Steps  int64 `json:"steps"`  // total optimizer steps; 0 means Epochs whole epochs
	Batch  int   `json:"batch"`  // global batch B, independent of the number of workers

	Optimizer string  `json:"optimizer"` // adamw, sgd or lars
	LR        float64 `json:"lr"`
	Schedule  string  `json:"schedule"` // constant or cosine, after the linear warm-up
	MinLR     float64 `json:"min_lr"`   // the end of the cosine decay
	WD        float64 `json:"wd"`
	Warmup    int64   `json:"warmup"`
	ClipNorm  float64 `json:"clip_norm"` // global gradient norm bound; 0 disables

	Temperature      float64 `json:"temperature"`       // τ: fixed, or the initial value when learned
	LearnTemperature bool    `json:"learn_temperature"` // learn t = ln(1/τ) (CLIP's logit scale)

	// ImageTower and TextTower name the kinds of the towers (model's
	// registered kinds; "" means mlp and bow).
	ImageTower string `json:"image_tower,omitempty"`
	TextTower  string `json:"text_tower,omitempty"`
	// The shapes of the cnn and vit image towers and of the transformer
	// text tower; zero fields take the model's defaults.
	CNN             model.CNNConfig         `json:"cnn,omitzero"`
	ViT             model.ViTConfig         `json:"vit,omitzero"`
	TextTransformer model.TransformerConfig `json:"text_transformer,omitzero"`
	// ActionTower, ActionHidden and ActionHorizon shape the action tower
	// of objectives with an action view: its kind ("" means mlp), its
	// hidden widths, and the steps H of a chunk (0: 8).
	ActionTower   string `json:"action_tower,omitempty"`
	ActionHidden  []int  `json:"action_hidden,omitempty"`
	ActionHorizon int    `json:"action_horizon,omitempty"`
	// ActionWidth and ActionKernel shape the temporal action tower (0: 32
	// channels, kernel 3); ActionState adds each sample's robot state,
	// normalised like the actions, to the action tower's input.
	ActionWidth  int  `json:"action_width,omitempty"`
	ActionKernel int  `json:"action_kernel,omitempty"`
	ActionState  bool `json:"action_state,omitempty"`
	// TriWeights are the weights of the image–text, image–action and
	// text–action losses of --objective tri (zero: 1, 1, 1).
	TriWeights [3]float64 `json:"tri_weights,omitzero"`
	// FusionHidden is the hidden width of the fusion head of --objective
	// vla, which fuses the image and instruction embeddings (0: 2·Dim).
	FusionHidden int `json:"fusion_hidden,omitempty"`
	// SigLIPBiasInit is the initial logit bias b0 of --objective siglip
	// (0: −10).
	SigLIPBiasInit float64 `json:"siglip_bias_init,omitempty"`
	// MaxPerEpisode bounds the samples of one episode in a global batch
	// (0: no bound).
	MaxPerEpisode int `json:"max_per_episode,omitempty"`
	// SceneNegatives orders each epoch so that the samples of one scene's
	// episodes (a source's scene ids, synth-vla --scene-variants) share
	// global batches, phase by phase (dataset.SceneBundles): hard
	// negatives of each other for every objective.
	SceneNegatives bool `json:"scene_negatives,omitempty"`
	// TCNWindow is the most steps apart two frames of a time-contrastive
	// positive pair are (0: 4); TCNWeight adds the time-contrastive loss,
	// so weighted, to CLIP's.
	TCNWindow int     `json:"tcn_window,omitempty"`
	TCNWeight float64 `json:"tcn_weight,omitempty"`
	// ViTMLPRatio sets the vit's MLP width as a multiple of its width
	// (0: the model's, 4).
	ViTMLPRatio float64 `json:"vit_mlp_ratio,omitempty"`
	// Tokenizer is a byte-level BPE tokenizer file (infonce tokenizer
	// train) for the transformer text tower; empty trains one from the
	// training captions at the start.
	Tokenizer   string `json:"tokenizer,omitempty"`
	Dim         int    `json:"dim"`
	ImageHidden []int  `json:"image_hidden"`
	TextHidden  int    `json:"text_hidden"`
	Activation  string `json:"activation"`
	LayerNorm   bool   `json:"layer_norm"`

	MaskFalseNegatives bool `json:"mask_false_negatives"`
	// MaskField is the id field whose equal values make two rows
	// positives of each other rather than negatives, with
	// MaskFalseNegatives: caption (the default), label, task or episode.
	MaskField string `json:"mask_field,omitempty"`
	// HardNegatives is β of the hard-negative reweighting of Robinson et
	// al. 2021 and Debias τ⁺ of the debiased loss of Chuang et al. 2020
	// (contrastive.Negatives), for clip, simclr and moco; 0 is off.
	HardNegatives float64 `json:"hard_negatives,omitempty"`
	Debias        float64 `json:"debias,omitempty"`
	MoCoMomentum  float64 `json:"moco_momentum"`
	MoCoQueue     int     `json:"moco_queue"`
	MoCoSymmetric bool    `json:"moco_symmetric"`
	Chunk         int     `json:"chunk"` // logit columns per chunk of the streamed loss
	// MicroBatch m > 0 encodes each rank's rows m at a time, keeping only
	// the embeddings, and encodes them again for the backward pass
	// (gradient caching): the activations of m rows are held at once,
	// and the gradient is the whole batch's (0: one pass).
	MicroBatch int `json:"micro_batch,omitempty"`

	CheckpointEvery int64 `json:"checkpoint_every"` // steps between checkpoints (0: only at the end and on a stop)
	// EvalEvery is the number of steps between evaluations during the
	// run, into metrics.jsonl (0: only at the end). In a distributed run
	// rank 0 evaluates while the other ranks wait.
	EvalEvery     int `json:"eval_every,omitempty"`
	ChecksumEvery int `json:"checksum_every"` // steps between parameter checksums across ranks (0: never)
	// BucketKiB is the size of the gradient buckets whose all-reduce
	// starts during the backward pass (0: one all-reduce after it).
	BucketKiB int `json:"bucket_kib"`
	// GradWire is the element format of the gradient on the data plane:
	// "f32" (exact, the default) or "bf16" (half the bytes, rounded; see
	// allreduce.BFloat16). GradCompression compresses each chunk of it:
	// "none" (the default), "zstd" or "s2"; compression is lossless.
	GradWire        string `json:"grad_wire,omitempty"`
	GradCompression string `json:"grad_compression,omitempty"`

	Seed     uint64 `json:"seed"`
	LogEvery int    `json:"log_every"`
	Out      string `json:"-"`
	// RunID names the run (NewRunID, or the job's id); every checkpoint
	// and the summary carry it, and a resumed run keeps it.
	RunID string `json:"run_id,omitempty"`
}

// DefaultConfig is the README's main job: CLIP on the embedded MNIST, one
// epoch, global batch 512, AdamW at 1e-3.
func DefaultConfig() Config {
	return Config{
		Objective:        CLIP,
		Data:             "mnist",
		Epochs:           1,
		Batch:            512,
		Optimizer:        "adamw",
		LR:               1e-3,
		Schedule:         "constant",
		WD:               0.1,
		Warmup:           0,
		Temperature:      0.07,
		LearnTemperature: true,
		Dim:              64,
		ImageHidden:      []int{512, 256},
		TextHidden:       256,
		Activation:       "relu",
		MoCoMomentum:     0.999,
		MoCoSymmetric:    false,
		Chunk:            1024,
		ChecksumEvery:    20,
		BucketKiB:        DefaultBucketKiB,
		GradWire:         "f32",
		GradCompression:  "none",
		Seed:             1,
		LogEvery:         10,
		Out:              "runs/latest",
	}
}

// Validate reports the first field that cannot work, naming its flag.
func (c Config) Validate() error {
	var errs []error
	if !knownObjective(c.Objective) {
		errs = append(errs, fmt.Errorf("--objective %q is unknown: use one of %v", c.Objective, Objectives()))
	}
	if k := c.ImageTower; k != "" && !slices.Contains(model.TowerKinds(model.ModalityImage), k) {
		errs = append(errs, fmt.Errorf("--image-tower %q is unknown: use one of %v", k, model.TowerKinds(model.ModalityImage)))
	}
	if k := c.TextTower; k != "" && !slices.Contains(model.TowerKinds(model.ModalityText), k) {
		errs = append(errs, fmt.Errorf("--text-tower %q is unknown: use one of %v", k, model.TowerKinds(model.ModalityText)))
	}
	switch c.Optimizer {
	case "adamw", "sgd", "lars":
	default:
		errs = append(errs, fmt.Errorf("--optimizer %q is unknown: use adamw, sgd or lars", c.Optimizer))
	}
	switch c.Schedule {
	case "constant", "cosine":
	default:
		errs = append(errs, fmt.Errorf("--schedule %q is unknown: use constant or cosine", c.Schedule))
	}
	if c.Batch < 1 {
		errs = append(errs, fmt.Errorf("--batch %d: the global batch must be at least 1", c.Batch))
	}
	if c.Steps < 0 || (c.Steps == 0 && c.Epochs < 1) {
		errs = append(errs, fmt.Errorf("--steps %d / --epochs %d: give a positive number of steps or epochs", c.Steps, c.Epochs))
	}
	if !(c.LR > 0) || math.IsInf(c.LR, 0) {
		errs = append(errs, fmt.Errorf("--lr %g: the learning rate must be a positive number", c.LR))
	}
	if c.WD < 0 {
		errs = append(errs, fmt.Errorf("--wd %g: weight decay must not be negative", c.WD))
	}
	// The trainer clamps t = ln(1/τ) to [0, ln 100] after every step, so
	// a τ outside [0.01, 1] could never take effect.
	if !(c.Temperature >= MinTemperature && c.Temperature <= MaxTemperature) {
		errs = append(errs, fmt.Errorf("--temperature %g: τ must be in [%g, %g], the range the logit scale is clamped to (s = 1/τ in [1, 100])", c.Temperature, MinTemperature, MaxTemperature))
	}
	if c.Dim < 1 {
		errs = append(errs, fmt.Errorf("--dim %d: the embedding dimension must be at least 1", c.Dim))
	}
	if c.Chunk < 1 {
		errs = append(errs, fmt.Errorf("--chunk %d: must be at least 1", c.Chunk))
	}
	if c.MicroBatch < 0 {
		errs = append(errs, fmt.Errorf("--micro-batch %d: must not be negative", c.MicroBatch))
	}
	if c.Objective == MoCo {
		if !(c.MoCoMomentum >= 0 && c.MoCoMomentum < 1) {
			errs = append(errs, fmt.Errorf("--moco-momentum %g: m must be in [0, 1)", c.MoCoMomentum))
		}
		if q := c.moCoQueue(); q%c.Batch != 0 || q <= 0 {
			errs = append(errs, fmt.Errorf("--moco-queue %d: the queue must hold a positive multiple of --batch %d keys", q, c.Batch))
		}
	}
	if c.ActionHorizon < 0 {
		errs = append(errs, fmt.Errorf("--action-horizon %d: must not be negative", c.ActionHorizon))
	}
	if k := c.ActionTower; k != "" && !slices.Contains(model.TowerKinds(model.ModalityAction), k) {
		errs = append(errs, fmt.Errorf("--action-tower %q is unknown: use one of %v", k, model.TowerKinds(model.ModalityAction)))
	}
	if (c.ActionWidth != 0 || c.ActionKernel != 0) && c.ActionTower != model.TowerTemporal {
		errs = append(errs, fmt.Errorf("--action-width and --action-kernel shape --action-tower %s, not %s", model.TowerTemporal, cmp.Or(c.ActionTower, model.TowerMLP)))
	}
	if c.ActionWidth < 0 || c.ActionKernel < 0 || c.ActionKernel%2 == 0 && c.ActionKernel != 0 {
		errs = append(errs, fmt.Errorf("--action-width %d, --action-kernel %d: want a positive width and an odd kernel (0: defaults)", c.ActionWidth, c.ActionKernel))
	}
	if c.FusionHidden < 0 {
		errs = append(errs, fmt.Errorf("--fusion-hidden %d: must not be negative (0: twice --dim)", c.FusionHidden))
	}
	for _, w := range c.TriWeights {
		if !(w >= 0) || math.IsInf(w, 0) {
			errs = append(errs, fmt.Errorf("--tri-weights %v: weights must be finite and not negative", c.TriWeights))
			break
		}
	}
	switch c.MaskField {
	case "", MaskCaption, MaskLabel, MaskTask, MaskEpisode:
	default:
		errs = append(errs, fmt.Errorf("--mask-false-negatives %q: use caption, label, task or episode", c.MaskField))
	}
	if c.MaxPerEpisode < 0 {
		errs = append(errs, fmt.Errorf("--max-per-episode %d: must not be negative", c.MaxPerEpisode))
	}
	if c.TCNWindow < 0 || !(c.TCNWeight >= 0) || math.IsInf(c.TCNWeight, 0) {
		errs = append(errs, fmt.Errorf("--tcn-window %d / --tcn-weight %g: must not be negative", c.TCNWindow, c.TCNWeight))
	}
	if err := c.negatives().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("--hard-negatives %g / --debias %g: %w", c.HardNegatives, c.Debias, err))
	} else if c.negatives().On() && !slices.Contains(negativesObjectives, c.Objective) {
		errs = append(errs, fmt.Errorf("--hard-negatives / --debias: reweighted or debiased negatives apply to the InfoNCE objectives %v, not to --objective %s", negativesObjectives, c.Objective))
	}
	if c.EvalEvery < 0 {
		errs = append(errs, fmt.Errorf("--eval-every %d: must not be negative", c.EvalEvery))
	}
	if c.ViTMLPRatio < 0 {
		errs = append(errs, fmt.Errorf("--vit-mlp-ratio %g: must not be negative", c.ViTMLPRatio))
	}
	if err := c.DataOptions.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.BucketKiB < 0 {
		errs = append(errs, fmt.Errorf("--bucket-kib %d: must not be negative", c.BucketKiB))
	}
	switch c.GradWire {
	case "", "f32", "bf16":
	default:
		errs = append(errs, fmt.Errorf("--grad-wire %q is unknown: use f32 or bf16", c.GradWire))
	}
	switch c.GradCompression {
	case "", "none", "zstd", "s2":
	default:
		errs = append(errs, fmt.Errorf("--grad-compression %q is unknown: use none, zstd or s2", c.GradCompression))
	}
	if c.LogEvery < 1 {
		errs = append(errs, fmt.Errorf("--log-every %d: must be at least 1", c.LogEvery))
	}
	return errors.Join(errs...)
}

// negativesObjectives are the objectives that take --hard-negatives and
// --debias: those with a softmax over negatives (CLIP both ways, NT-Xent,
// MoCo's queue).
var negativesObjectives = []string{CLIP, SimCLR, MoCo}

// negatives is the reweighting of the negatives that --hard-negatives and
// --debias set.
func (c Config) negatives() contrastive.Negatives {
	return contrastive.Negatives{Beta: c.HardNegatives, TauPlus: c.Debias}
}

func (c Config) tcnWindow() int { return cmp.Or(c.TCNWindow, 4) }

func (c Config) actionHorizon() int { return cmp.Or(c.ActionHorizon, DefaultActionHorizon) }

// moCoQueue is the queue size, defaulting to 8 global batches.
func (c Config) moCoQueue() int {
	if c.MoCoQueue == 0 {
		return 8 * c.Batch
	}
	return c.MoCoQueue
}

// Fingerprint summarises what every rank must agree on: the model's shape,
// the objective and the batch, and the gradient's wire format when it is
// not exact (bfloat16 changes the results; compression does not, and
// neither appears).
func (c Config) Fingerprint() string {
	var b strings.Builder
	fmt.Fprintf(&b, "objective=%s data=%s batch=%d dim=%d hidden=%v text=%d act=%s ln=%v seed=%d opt=%s",
		c.Objective, c.Data, c.Batch, c.Dim, c.ImageHidden, c.TextHidden, c.Activation, c.LayerNorm, c.Seed, c.Optimizer)
	// The towers' kinds join the summary when they are not the defaults,
	// so that the checkpoints of runs with the default towers still match.
	if c.ImageTower != "" && c.ImageTower != model.TowerMLP || c.TextTower != "" && c.TextTower != model.TowerBagOfWords {
		fmt.Fprintf(&b, " towers=%s,%s cnn=%v vit=%v text=%v", c.ImageTower, c.TextTower, c.CNN, c.ViT, c.TextTransformer)
	}
	if c.ActionTower == model.TowerTemporal || c.ActionState {
		fmt.Fprintf(&b, " action=%s,%d,%d,state=%v", c.ActionTower, c.ActionWidth, c.ActionKernel, c.ActionState)
	}
	if c.lossyGradWire() {
		fmt.Fprintf(&b, " grad_wire=%s", c.GradWire)
	}
	if c.TCNWeight > 0 {
		fmt.Fprintf(&b, " tcn=%g", c.TCNWeight)
	}
	if c.HardNegatives != 0 {
		fmt.Fprintf(&b, " hard_negatives=%g", c.HardNegatives)
	}
	if c.Debias != 0 {
		fmt.Fprintf(&b, " debias=%g", c.Debias)
	}
	if c.MaxPerEpisode > 0 {
		fmt.Fprintf(&b, " max_per_episode=%d", c.MaxPerEpisode)
	}
	if c.FusionHidden > 0 {
		fmt.Fprintf(&b, " fusion_hidden=%d", c.FusionHidden)
	}
	if c.SceneNegatives {
		b.WriteString(" scene_negatives")
	}
	// The image views' shape joins it for the sources that have them.
	if o := c.DataOptions; o.ImageSize != 0 || o.ImageChannels != 0 {
		fmt.Fprintf(&b, " image=%dx%d", o.ImageSize, o.ImageChannels)
	}
	return b.String()
}

// withGradWire returns rc with the gradient's wire format and compression
// of c (GradWire, GradCompression).
func (c Config) withGradWire(rc allreduce.Config) allreduce.Config {
	rc.Wire, rc.Compression = allreduce.Float32, ""
	if c.GradWire == "bf16" {
		rc.Wire = allreduce.BFloat16
	}
	if c.GradCompression != "none" {
		rc.Compression = c.GradCompression
	}
	return rc
}

// lossyGradWire reports whether the gradient's wire format rounds it.
func (c Config) lossyGradWire() bool { return c.GradWire == "bf16" }

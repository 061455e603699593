package worker

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/contrastive"
	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/model"
)

// Objective is a training loss over named views of the global batch: the
// rank gives it the embeddings of its local rows, and it returns its share
// of the global loss and writes the exact gradient with respect to those
// embeddings, gathering what it needs through the collective (DESIGN's
// step 4). A new objective is one type implementing it and one
// RegisterObjective call; Step does the rest: it builds the views, encodes
// them with their towers, calls Loss, runs each tower's backward pass with
// the gradient, reduces and updates.
//
// An objective may also implement the optional interfaces below:
// viewEncoder (encodings of its own in the forward phase, such as MoCo's
// key encoder), committer (state updated once the step is known to be
// finite, such as MoCo's queue), updater (state that follows the
// parameters after the update, such as MoCo's momentum encoder),
// initializer (state built from the model), Stateful (state that goes
// into checkpoints), fuser (a fusion head in the model) and paramGrader
// (the gradient of parameters the objective owns in the model).
type Objective[T gemm.Float] interface {
	// Views lists the views the objective needs, in the order Loss finds
	// them in LossInput.Views. The views a tower encodes come first among
	// the views of that tower.
	Views() []ViewSpec
	// Loss returns the rank's share of the loss (normalised by the global
	// batch, so that the shares sum to the loss) and of ∂L/∂t, and writes
	// ∂L/∂emb into the DEmb of every encoded view.
	Loss(ctx context.Context, coll contrastive.Collective, in *LossInput[T]) (contrastive.Result[T], error)
}

// ViewSpec names one input of an objective, built from a sample's fields.
type ViewSpec struct {
	// Name is the view's name: "image", "image2", "text".
	Name string
	// Tower is the modality of the tower whose input the view is
	// (model.ModalityImage, model.ModalityText).
	Tower string
	// Augment is 0 for an image as it is, and k ≥ 1 for SimCLR's k-th
	// augmented view of it, keyed (seed, step, sample, k−1).
	Augment int
	// InputOnly views are built but not encoded by the trained tower: the
	// objective reads their input (MoCo's key view).
	InputOnly bool
	// Nearby image views show another frame of the sample's episode, at
	// most --tcn-window steps away, drawn from (seed, epoch, sample): the
	// positives of a time-contrastive loss. With Later the frame is a
	// later one (or the sample's own at the episode's end).
	Nearby, Later bool
}

// View is one view of the rank's local rows in a step.
type View[T gemm.Float] struct {
	ViewSpec
	// In is the input of the local rows.
	In model.Batch[T]
	// Emb holds the N×d embeddings of In by the trained tower; nil for an
	// InputOnly view.
	Emb []T
	// DEmb receives ∂L/∂Emb (N×d); the objective overwrites all of it.
	DEmb []T
	// Groups are per-row ids of what the rows show (a caption's id), for
	// masking false negatives; nil when the view has none.
	Groups []int32
}

// LossInput is what an objective sees of one step on one rank.
type LossInput[T gemm.Float] struct {
	// Views are the views of Objective.Views, in that order.
	Views []View[T]
	// D is the embedding dimension.
	D int
	// Counts are the local rows of every rank, in rank order.
	Counts []int
	// Scale is the logit scale s = exp(t).
	Scale T
	// Bias is the logit bias b of an objective that has one (biased).
	Bias T
	// Step is the global step.
	Step int64

	towerIn map[string]model.Batch[T]
}

// TowerInput is the input of every view of a tower's modality, the views'
// rows one after the other in the order of Objective.Views.
func (in *LossInput[T]) TowerInput(modality string) model.Batch[T] { return in.towerIn[modality] }

// biased is an objective with a learnable logit bias b beside the logit
// scale (SigLIP's), initialised to InitLogitBias; Loss returns dL/db in
// Result.DB.
type biased interface {
	InitLogitBias() float64
}

// fuser is an objective that needs a fusion head in the model
// (model.Config.Fusion): of that kind and hidden width (0: the model's
// default).
type fuser interface {
	Fusion() (kind string, hidden int)
}

// paramGrader is an objective with parameters of its own in the model's
// flat buffer (a fusion head) whose gradient it computes in Loss. Step
// clears P.G concurrently with the forward phase and Loss
// (finishZeroGrad), so Loss cannot write there: it keeps the gradient,
// and Step calls AddParamGrad(P.G) once the clearing is over, before the
// towers' backward passes and before the reduction begins (the head's
// segments come after the logit scale, which the overlapped reduction
// takes as final first).
type paramGrader[T gemm.Float] interface {
	AddParamGrad(g []T)
}

// viewEncoder is an objective that encodes inputs of its own in the
// forward phase (MoCo's keys, through the momentum encoder).
type viewEncoder[T gemm.Float] interface {
	EncodeViews(in *LossInput[T]) error
}

// committer is an objective with state that takes the step's result once
// the step's summed loss and gradient are known to be finite: the last
// collective of the step, after the reduction.
type committer[T gemm.Float] interface {
	Commit(ctx context.Context, coll contrastive.Collective, in *LossInput[T]) error
}

// updater is an objective with state that follows the parameters w after
// every optimizer step.
type updater[T gemm.Float] interface {
	AfterUpdate(w []T)
}

// initializer is an objective that builds state from the model, once,
// before the first step.
type initializer[T gemm.Float] interface {
	Init(m *model.Model[T]) error
}

// Stateful is an objective whose state goes into checkpoints and the
// state broadcast to joining ranks: blobs of its own and extra manifest
// fields, restored by Restore (from names the source in errors).
type Stateful[T gemm.Float] interface {
	Snapshot() ([]checkpoint.Blob, map[string]string)
	Restore(from string, blob func(name string) ([]byte, error), extra map[string]string) error
}

// ObjectiveMaker builds an objective of element type T from the run's
// configuration.
type ObjectiveMaker[T gemm.Float] func(cfg Config) (Objective[T], error)

type objectiveMakers struct {
	f32 ObjectiveMaker[float32]
	f64 ObjectiveMaker[float64]
}

var (
	objectivesMu sync.RWMutex
	objectives   = map[string]objectiveMakers{}
)

// RegisterObjective makes name a value of --objective, built by f32 for
// training and f64 for exact checks. It fails on a name taken already.
func RegisterObjective(name string, f32 ObjectiveMaker[float32], f64 ObjectiveMaker[float64]) error {
	objectivesMu.Lock()
	defer objectivesMu.Unlock()
	if _, dup := objectives[name]; dup {
		return fmt.Errorf("objective %q is registered already", name)
	}
	if f32 == nil || f64 == nil {
		return fmt.Errorf("objective %q: both makers are needed", name)
	}
	objectives[name] = objectiveMakers{f32, f64}
	return nil
}

func mustRegister(name string, f32 ObjectiveMaker[float32], f64 ObjectiveMaker[float64]) {
	if err := RegisterObjective(name, f32, f64); err != nil {
		panic(err)
	}
}

// Objectives lists the registered objectives, sorted.
func Objectives() []string {
	objectivesMu.RLock()
	defer objectivesMu.RUnlock()
	names := make([]string, 0, len(objectives))
	for n := range objectives {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func knownObjective(name string) bool {
	objectivesMu.RLock()
	defer objectivesMu.RUnlock()
	_, ok := objectives[name]
	return ok
}

// newObjective builds the objective cfg names, for element type T.
func newObjective[T gemm.Float](cfg Config) (Objective[T], error) {
	objectivesMu.RLock()
	mk, ok := objectives[cfg.Objective]
	objectivesMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("--objective %q is unknown: use one of %v", cfg.Objective, Objectives())
	}
	var o any
	var err error
	switch any(*new(T)).(type) {
	case float32:
		o, err = mk.f32(cfg)
	case float64:
		o, err = mk.f64(cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("objective %s: %w", cfg.Objective, err)
	}
	obj := o.(Objective[T])
	if err := checkViews(obj.Views()); err != nil {
		return nil, fmt.Errorf("objective %s: %w", cfg.Objective, err)
	}
	return obj, nil
}

// checkViews refuses view lists Step cannot lay out: unknown towers,
// repeated names, and an encoded view after an input-only one of the same
// tower (a tower encodes its views' rows in one pass, so its encoded views
// come first).
func checkViews(specs []ViewSpec) error {
	if len(specs) == 0 {
		return fmt.Errorf("no views")
	}
	var names []string
	inputOnly := map[string]bool{}
	for _, v := range specs {
		if slices.Contains(names, v.Name) {
			return fmt.Errorf("view %q listed twice", v.Name)
		}
		names = append(names, v.Name)
		switch v.Tower {
		case model.ModalityImage:
		case model.ModalityText, model.ModalityAction:
			if v.Augment != 0 || v.InputOnly {
				return fmt.Errorf("view %q: %s views are encoded as they are", v.Name, v.Tower)
			}
		default:
			return fmt.Errorf("view %q: unknown tower %q", v.Name, v.Tower)
		}
		if v.InputOnly {
			inputOnly[v.Tower] = true
		} else if inputOnly[v.Tower] {
			return fmt.Errorf("view %q: an encoded view must come before the input-only views of its tower", v.Name)
		}
	}
	return nil
}

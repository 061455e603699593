package worker

import (
	"context"
	"fmt"
	"slices"

	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/contrastive"
	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/model"
)

// Blob names of MoCo's state in a checkpoint.
const (
	blobKeyParams = "moco_key_params"
	blobQueue     = "moco_queue"
)

// mocoObjective is MoCo (contrastive.MoCo): queries q = f_q(x1) by the
// trained image tower, keys k = f_k(x2) by the momentum encoder θ_k (no
// gradient), negatives from a queue of past keys. Symmetric adds the
// other pairing: q = f_q([x1; x2]), k = f_k([x1; x2]), loss
// ½[ctr(q1, k2) + ctr(q2, k1)].
type mocoObjective[T gemm.Float] struct {
	loss     contrastive.MoCo[T]
	momentum T
	key      *model.Model[T] // f_k, over keyW
	keyW     []T             // θ_k
	k1, k2   []T             // this step's keys of view 1 (symmetric only) and view 2
	// micro is --micro-batch: the keys are encoded that many rows at a
	// time into keys (0: in one pass, the keys a view of the key
	// encoder's output).
	micro int
	keys  []T
}

func newMoCo[T gemm.Float](cfg Config) (Objective[T], error) {
	q := contrastive.NewQueue[T](cfg.moCoQueue(), cfg.Dim, cfg.Seed^0x9e3779b97f4a7c15)
	return &mocoObjective[T]{
		loss:     contrastive.MoCo[T]{Queue: q, Symmetric: cfg.MoCoSymmetric, Chunk: cfg.Chunk, Negatives: cfg.negatives()},
		momentum: T(cfg.MoCoMomentum),
		micro:    cfg.MicroBatch,
	}, nil
}

func (o *mocoObjective[T]) Views() []ViewSpec {
	return []ViewSpec{
		{Name: "image", Tower: model.ModalityImage, Augment: 1},
		{Name: "image2", Tower: model.ModalityImage, Augment: 2, InputOnly: !o.loss.Symmetric},
	}
}

// Init makes the key encoder θ_k a copy of the initial θ_q.
func (o *mocoObjective[T]) Init(m *model.Model[T]) error {
	o.keyW = slices.Clone(m.P.W)
	key, err := model.NewWithParams[T](m.Cfg, o.keyW)
	if err != nil {
		return fmt.Errorf("moco key encoder: %w", err)
	}
	o.key = key
	return nil
}

// EncodeViews computes the keys: f_k(x2), or f_k([x1; x2]) when symmetric.
// The key encoder has no backward pass, so with micro-batches its rows are
// encoded once, m at a time.
func (o *mocoObjective[T]) EncodeViews(in *LossInput[T]) error {
	b, d := in.Views[1].In.N, in.D
	x := in.Views[1].In
	if o.loss.Symmetric {
		x = in.TowerInput(model.ModalityImage)
	}
	var k []T
	var err error
	if o.micro > 0 && x.N > o.micro {
		k, err = encodeMicro(o.key.Image, x, o.micro, d, &o.keys, nil)
	} else {
		k, err = o.key.Image.Forward(x)
	}
	if err != nil {
		return fmt.Errorf("key encoder: %w", err)
	}
	if o.loss.Symmetric {
		o.k1, o.k2 = k[:b*d], k[b*d:2*b*d]
		return nil
	}
	o.k1, o.k2 = nil, k
	return nil
}

func (o *mocoObjective[T]) Loss(ctx context.Context, coll contrastive.Collective, in *LossInput[T]) (contrastive.Result[T], error) {
	q1, q2 := &in.Views[0], &in.Views[1]
	mi := contrastive.MoCoInput[T]{Q1: q1.Emb, K2: o.k2, DQ1: q1.DEmb, D: in.D, Counts: in.Counts, Scale: in.Scale}
	if o.loss.Symmetric {
		mi.Q2, mi.K1, mi.DQ2 = q2.Emb, o.k1, q2.DEmb
	}
	return o.loss.Compute(ctx, coll, mi)
}

// Commit enqueues this step's keys k2 = f_k(x2) of every rank. They are a
// view into the key encoder's output cache (or into keys), untouched until
// its next forward.
func (o *mocoObjective[T]) Commit(ctx context.Context, coll contrastive.Collective, in *LossInput[T]) error {
	if err := o.loss.Enqueue(ctx, coll, o.k2, in.D, in.Counts); err != nil {
		return fmt.Errorf("moco enqueue: %w", err)
	}
	return nil
}

// AfterUpdate is θ_k ← m·θ_k + (1−m)·θ_q with the updated θ_q: the keys of
// the next step come from it, as in MoCo's update before each forward.
func (o *mocoObjective[T]) AfterUpdate(w []T) { contrastive.MomentumUpdate(o.keyW, w, o.momentum) }

// Snapshot is θ_k, the queue and its pointer.
func (o *mocoObjective[T]) Snapshot() ([]checkpoint.Blob, map[string]string) {
	q := o.loss.Queue
	return []checkpoint.Blob{
			{Name: blobKeyParams, Data: floatBytes(o.keyW)},
			{Name: blobQueue, Data: floatBytes(q.Data())},
		},
		map[string]string{"moco_queue_ptr": fmt.Sprint(q.Ptr())}
}

// Restore loads what Snapshot saved.
func (o *mocoObjective[T]) Restore(from string, blob func(string) ([]byte, error), extra map[string]string) error {
	if err := loadFloats(from, blob, blobKeyParams, o.keyW); err != nil {
		return err
	}
	q := make([]T, len(o.loss.Queue.Data()))
	if err := loadFloats(from, blob, blobQueue, q); err != nil {
		return err
	}
	var ptr int
	if _, err := fmt.Sscan(extra["moco_queue_ptr"], &ptr); err != nil {
		return fmt.Errorf("state from %s: moco_queue_ptr: %w", from, err)
	}
	if err := o.loss.Queue.Restore(q, ptr); err != nil {
		return fmt.Errorf("state from %s: moco queue: %w", from, err)
	}
	return nil
}

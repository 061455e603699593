package worker

import (
	"context"
	"fmt"

	"github.com/infonce/infonce/contrastive"
)

// mocoForwardLoss runs MoCo's step on the local rows up to the loss: the
// keys from θ_k (no gradient; its momentum update follows the optimizer
// step), the queries from θ_q and the loss against the queue, leaving
// ∂L/∂q of t.mocoRows rows in t.dq for the backward pass through the query
// encoder only. It leaves the keys to enqueue in the key encoder's output,
// read by mocoKeys after the optimizer step.
func (t *Trainer[T]) mocoForwardLoss(ctx context.Context, comm Comm[T], step int64, local []int, b int, counts []int, s T, sw *stopwatch, times *StepTimes) (contrastive.Result[T], error) {
	d := t.Cfg.Dim
	P := t.pixels()
	times.Data = sw.lap()
	views := t.x[:2*b*P] // view 1 rows, then view 2 rows
	in := contrastive.MoCoInput[T]{D: d, Counts: counts, Scale: s}
	t.dq = grow(t.dq, 2*b*d)
	rows := b
	if t.Cfg.MoCoSymmetric {
		// q = f_q([x1; x2]), k = f_k([x1; x2]); loss ½[ctr(q1,k2) + ctr(q2,k1)].
		k, err := t.key.Image.Forward(views, 2*b)
		if err != nil {
			return contrastive.Result[T]{}, fmt.Errorf("step %d: key encoder: %w", step, err)
		}
		q, err := t.Model.Image.Forward(views, 2*b)
		if err != nil {
			return contrastive.Result[T]{}, fmt.Errorf("step %d: query encoder: %w", step, err)
		}
		in.Q1, in.Q2 = q[:b*d], q[b*d:2*b*d]
		in.K1, in.K2 = k[:b*d], k[b*d:2*b*d]
		in.DQ1, in.DQ2 = t.dq[:b*d], t.dq[b*d:2*b*d]
		t.mocoK2 = in.K2
		rows = 2 * b
	} else {
		// q = f_q(x1), k = f_k(x2); loss ctr(q1, k2).
		k, err := t.key.Image.Forward(views[b*P:], b)
		if err != nil {
			return contrastive.Result[T]{}, fmt.Errorf("step %d: key encoder: %w", step, err)
		}
		q, err := t.Model.Image.Forward(views[:b*P], b)
		if err != nil {
			return contrastive.Result[T]{}, fmt.Errorf("step %d: query encoder: %w", step, err)
		}
		in.Q1, in.K2, in.DQ1 = q, k, t.dq[:b*d]
		t.mocoK2 = k
	}
	times.Forward = sw.lap()
	t.mocoRows = rows
	r, err := t.moco.Compute(ctx, comm, in)
	if err != nil {
		return r, fmt.Errorf("step %d: moco loss: %w", step, err)
	}
	return r, nil
}

// mocoKeys returns the keys of this step to enqueue: k2 = f_k(x2), the
// positives of the queries of view 1. They are a view into the key
// encoder's output cache, untouched until its next forward.
func (t *Trainer[T]) mocoKeys() []T { return t.mocoK2 }

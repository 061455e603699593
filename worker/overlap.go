package worker

import (
	"context"
	"fmt"
	"unsafe"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/model"
)

// DefaultBucketKiB is the default gradient bucket of a distributed step.
// It splits the default model's 2.3 MB gradient in two (the top layers,
// the 1.6 MB first layer); with one core per worker buckets neither help
// nor hurt (docs/SCALING.md, "Worker defaults"), and they pay where a
// core is free to reduce beside the backward pass.
const DefaultBucketKiB = 512

// backgroundReducer is a Comm that can reduce float32 buffers in the
// background, in the order they are started, on every rank alike: the ring
// of package allreduce. Whether a step overlaps its reduction with the
// backward pass depends only on this, the run's configuration and the
// parameters' type, so that every rank of a ring decides alike.
type backgroundReducer interface {
	Start(ctx context.Context, buf []float32) *allreduce.Pending
}

// overlapped is a step's reduction in flight: the buckets started so far
// and the open one, g[lo:hi], which grows downwards as the backward pass
// hands over adjacent slices. g is P.G with the pair (loss share, stop
// request) in the room model.New leaves after its end.
type overlapped struct {
	br      backgroundReducer
	ctx     context.Context
	g       []float32
	maxElem int // a bucket is started once it holds this many
	lo, hi  int
	pending []*allreduce.Pending
	err     error // a slice handed over out of order
}

// startReduce begins step 6 before the backward pass when comm reduces in
// the background, the parameters are float32 and Cfg.BucketKiB > 0: it puts
// the pair (loss share, stop) after the gradient, where it opens the first
// bucket with the logit scale's slice (final already), and arms the model's
// gradient hook, which adds the slices the backward pass finishes to the
// open bucket and starts the all-reduce of each bucket once it holds
// Cfg.BucketKiB. It reports whether it did; if not, reduce runs after the
// backward pass.
func (t *Trainer[T]) startReduce(ctx context.Context, comm Comm[T], lossShare T, stop bool) bool {
	if t.Cfg.BucketKiB <= 0 || comm.Size() == 1 {
		return false
	}
	br, ok := comm.(backgroundReducer)
	if !ok {
		return false
	}
	g, ok := any(t.Model.P.G).([]float32)
	if !ok {
		return false
	}
	r := &t.red
	n := len(g)
	r.br, r.ctx, r.maxElem, r.err = br, ctx, max(1, t.Cfg.BucketKiB<<10/4), nil
	r.pending = r.pending[:0]
	r.g = g[:n+model.GradTail]
	r.g[n], r.g[n+1] = float32(lossShare), 0
	if stop {
		r.g[n+1] = 1
	}
	r.lo, r.hi = len(r.g), len(r.g)
	t.overlappedSteps++
	if t.gradReady == nil {
		t.gradReady = t.handOver
	}
	t.Model.SetGradReady(t.gradReady)
	r.add(n, model.GradTail)
	// The scalars after the towers (the logit scale, and a logit bias)
	// and a fusion head's gradient (paramGrader), final already.
	ls := t.Model.LogitScale
	t.handOver(t.Model.P.G[ls:])
	return true
}

// handOver adds one final gradient slice of P.G to the open bucket: the
// slices come from the top of the buffer down, each ending where the open
// bucket begins.
func (t *Trainer[T]) handOver(g []T) {
	r := &t.red
	if r.err != nil || len(g) == 0 {
		return
	}
	off := int(uintptr(unsafe.Pointer(unsafe.SliceData(g)))-uintptr(unsafe.Pointer(unsafe.SliceData(r.g)))) / 4
	r.add(off, len(g))
}

// add puts r.g[off:off+n] into the open bucket and starts the bucket once
// it is full.
func (r *overlapped) add(off, n int) {
	if off < 0 || off+n > len(r.g) || off+n != r.lo {
		r.err = fmt.Errorf("slice [%d, %d) of the gradient handed over after [%d, %d): not the next one down", off, off+n, r.lo, r.hi)
		return
	}
	r.lo = off
	if r.hi-r.lo >= r.maxElem {
		r.flush()
	}
}

// flush starts the all-reduce of the open bucket.
func (r *overlapped) flush() {
	if r.lo == r.hi {
		return
	}
	r.pending = append(r.pending, r.br.Start(r.ctx, r.g[r.lo:r.hi]))
	r.hi = r.lo
}

// finishReduce starts the last bucket, waits for the reduction startReduce
// began and returns the global loss and whether any rank asked to stop.
func (t *Trainer[T]) finishReduce() (float64, bool, error) {
	t.Model.SetGradReady(nil)
	r := &t.red
	if r.err == nil && r.lo != 0 {
		r.err = fmt.Errorf("the backward pass handed over the gradient down to %d, not to 0", r.lo)
	}
	if r.err != nil {
		// A bug of this package: the ranks would disagree on the buckets,
		// so the step must not go on.
		return 0, false, t.abandon(true, fmt.Errorf("gradient buckets: %w", r.err))
	}
	r.flush()
	var first error
	for _, p := range r.pending {
		if err := p.Wait(); err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return 0, false, first
	}
	n := len(r.g) - model.GradTail
	return float64(r.g[n]), r.g[n+1] > 0, nil
}

// abandon ends a reduction in flight after the step failed before it
// could finish: the buckets already started complete (or fail) before the
// buffers they read are used again.
func (t *Trainer[T]) abandon(overlap bool, err error) error {
	if !overlap {
		return err
	}
	t.Model.SetGradReady(nil)
	for _, p := range t.red.pending {
		_ = p.Wait()
	}
	return err
}

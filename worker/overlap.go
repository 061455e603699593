package worker

import (
	"context"
	"fmt"
	"unsafe"

	"github.com/infonce/infonce/allreduce"
)

// DefaultBucketKiB is the default gradient bucket of a distributed step:
// docs/BENCHMARKS.md has the measurement that chose it.
const DefaultBucketKiB = 512

// backgroundReducer is a Comm that can reduce float32 buffers in the
// background, in the order they are started, on every rank alike: the ring
// of package allreduce. Whether a step overlaps its reduction with the
// backward pass depends only on this, the run's configuration and the
// parameters' type, so that every rank of a ring decides alike.
type backgroundReducer interface {
	Start(ctx context.Context, buf []float32) *allreduce.Pending
}

// overlapped is a step's reduction in flight: the pair (loss share, stop
// request), the buckets started so far and the open one, P.G[lo:hi], which
// grows downwards as the backward pass hands over adjacent slices.
type overlapped struct {
	br      backgroundReducer
	ctx     context.Context
	g       []float32 // P.G
	maxElem int       // a bucket is started once it holds this many
	lo, hi  int
	pending []*allreduce.Pending
	pair    *allreduce.Pending
	buf     [2]float32 // the pair, reduced in place
	err     error      // a slice handed over out of order
}

// startReduce begins step 6 before the backward pass when comm reduces in
// the background, the parameters are float32 and Cfg.BucketKiB > 0: it
// starts the all-reduce of (loss share, stop) and arms the model's
// gradient hook, which collects the slices the backward pass finishes into
// buckets of Cfg.BucketKiB and starts the all-reduce of each full one (the
// logit scale's slice first: it is final already). It reports whether it
// did; if not, reduce runs after the backward pass.
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
	r.br, r.ctx, r.g, r.maxElem, r.err = br, ctx, g, max(1, t.Cfg.BucketKiB<<10/4), nil
	r.lo, r.hi = len(g), len(g)
	r.pending = r.pending[:0]
	r.buf = [2]float32{float32(lossShare), 0}
	if stop {
		r.buf[1] = 1
	}
	r.pair = br.Start(ctx, r.buf[:])
	t.overlappedSteps++
	if t.gradReady == nil {
		t.gradReady = t.handOver
	}
	t.Model.SetGradReady(t.gradReady)
	ls := t.Model.LogitScale
	t.handOver(t.Model.P.G[ls : ls+1])
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
	if off < 0 || off+len(g) > len(r.g) || off+len(g) != r.lo {
		r.err = fmt.Errorf("slice [%d, %d) of the gradient handed over after [%d, %d): not the next one down", off, off+len(g), r.lo, r.hi)
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
	for _, p := range append(r.pending, r.pair) {
		if err := p.Wait(); err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return 0, false, first
	}
	return float64(r.buf[0]), r.buf[1] > 0, nil
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
	_ = t.red.pair.Wait()
	return err
}

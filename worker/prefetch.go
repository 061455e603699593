package worker

import (
	"slices"
	"sync"

	"github.com/infonce/infonce/gemm"
)

// A rank of a ring waits for the others at each collective of a step (the
// all-gathers of the loss, the gradient's all-reduce). The input rows of
// the next step are a pure function of (seed, step, sample), so the rank
// draws them in those waits: the data plane calls PrefetchSome between
// its polls for the peers (allreduce.Config.OnWait), and each call draws a
// few rows into a spare buffer. The next step takes the buffer, draws
// whatever rows are still missing, and its data phase, otherwise on every
// rank's critical path, shrinks by what the waits absorbed. A single
// process has no waits and draws its rows in the step.
//
// The gradient buffer is zeroed the same way: it is free from the start
// of a step until its backward pass (the waits of the loss's gathers lie
// in between), so PrefetchSome clears it a piece at a time once the rows
// are drawn, and the step clears what is left before the backward pass.

// prefetchRowsPerCall is how many samples one PrefetchSome draws: a few
// microseconds for CLIP's rows, tens for two augmented views, so that a
// wait whose peer has arrived is not held up for long.
const prefetchRowsPerCall = 4

// prefetch is the input of one step drawn ahead into a spare buffer.
type prefetch[T gemm.Float] struct {
	mu     sync.Mutex
	active bool // a step is being drawn
	step   int64
	K, k   int   // the ring it is drawn for
	local  []int // its samples, in row order: idx[lo:hi]
	next   int   // rows [0, next) are drawn
	idx    []int // the global batch of step
	x      []T
	meta   []rowMeta // the rows' captions and labels (source runs)

	g     []T // the gradient being zeroed ahead; nil when none
	gNext int // g[:gNext] is zero
}

// zeroPiece is how many gradient elements one PrefetchSome clears.
const zeroPiece = 16 << 10

// startZeroGrad zeroes the gradient buffer at the start of a step: now
// for a single process, else in this step's waits (PrefetchSome) and, for
// what they leave, in finishZeroGrad, which the step calls before its
// backward pass.
func (t *Trainer[T]) startZeroGrad(K int) {
	if K < 2 {
		t.Model.P.ZeroGrad()
		return
	}
	pf := &t.pf
	pf.mu.Lock()
	pf.g, pf.gNext = t.Model.P.G, 0
	pf.mu.Unlock()
}

// finishZeroGrad clears what the waits left of the gradient buffer; after
// it the buffer is the step's alone until the next startZeroGrad.
func (t *Trainer[T]) finishZeroGrad() {
	pf := &t.pf
	pf.mu.Lock()
	defer pf.mu.Unlock()
	if pf.g != nil {
		clear(pf.g[pf.gNext:])
		t.zeroedAhead += int64(pf.gNext)
		pf.g, pf.gNext = nil, 0
	}
}

// startPrefetch sets up the drawing of the input of step for rank k of K
// (its rows [lo, hi) of the global batch) into the spare buffer, when the
// ring has more than one rank and step is part of the run.
func (t *Trainer[T]) startPrefetch(step int64, K, k, lo, hi int) {
	pf := &t.pf
	pf.mu.Lock()
	defer pf.mu.Unlock()
	pf.active = false
	// One process has no waits to draw in; a source's rows (decoded
	// files) are then drawn by a goroutine of their own while the step
	// computes, an idx set's (a copy from memory) in the step.
	background := K < 2 && t.Set != nil
	if background || (t.totalSteps > 0 && step >= t.totalSteps) {
		return
	}
	_, pf.idx = t.Sampler.Batch(step, pf.idx)
	pf.local = pf.idx[lo:hi]
	pf.x = grow(pf.x, t.inputRows(hi-lo)*t.pixels())
	if t.Set == nil {
		pf.meta = grow(pf.meta, hi-lo)
	}
	pf.step, pf.K, pf.k, pf.next, pf.active = step, K, k, 0, true
	if K < 2 {
		t.drawing.Add(1)
		go t.drawAhead()
	}
}

// drawAhead draws the prefetch's rows until they are all drawn or the
// step took the buffer (one process, a source's rows).
func (t *Trainer[T]) drawAhead() {
	defer t.drawing.Done()
	pf := &t.pf
	for {
		pf.mu.Lock()
		if !pf.active || pf.next >= len(pf.local) {
			pf.mu.Unlock()
			return
		}
		hi := min(pf.next+prefetchRowsPerCall, len(pf.local))
		t.drawRows(pf.x, pf.meta, pf.step, pf.local, pf.next, hi)
		pf.next = hi
		pf.mu.Unlock()
	}
}

// PrefetchSome draws a few rows of the next step's input, if any are left
// to draw, or else zeroes a piece of the gradient buffer when the step
// has not started its backward pass yet, and reports whether it did
// either. The data plane calls it while this rank waits for its peers
// (allreduce.Config.OnWait); it is safe to call from any goroutine, and
// returns at once when another call or the step itself holds the buffer.
func (t *Trainer[T]) PrefetchSome() bool {
	pf := &t.pf
	if !pf.mu.TryLock() {
		return false
	}
	defer pf.mu.Unlock()
	if !pf.active || pf.next >= len(pf.local) {
		if pf.g == nil || pf.gNext >= len(pf.g) {
			return false
		}
		hi := min(pf.gNext+zeroPiece, len(pf.g))
		clear(pf.g[pf.gNext:hi])
		pf.gNext = hi
		return true
	}
	hi := min(pf.next+prefetchRowsPerCall, len(pf.local))
	t.drawRows(pf.x, pf.meta, pf.step, pf.local, pf.next, hi)
	pf.next = hi
	return true
}

// takePrefetch makes the prefetched rows the input of step when they are
// being drawn for exactly this step, ring and samples (after a new
// generation or a repeated step they are not, and the step draws its
// own), swapping the buffers: rows [0, drawn) of t.x are then in, and the
// step draws the rest. ok reports whether it took them.
func (t *Trainer[T]) takePrefetch(step int64, K, k int, local []int) (drawn int, ok bool) {
	pf := &t.pf
	pf.mu.Lock()
	defer pf.mu.Unlock()
	if !pf.active {
		return 0, false
	}
	pf.active = false
	if pf.step != step || pf.K != K || pf.k != k || !slices.Equal(pf.local, local) {
		return 0, false
	}
	t.x, pf.x = pf.x, t.x
	t.rowMeta, pf.meta = pf.meta, t.rowMeta
	t.prefetched++
	return pf.next, true
}

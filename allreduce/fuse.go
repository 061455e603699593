package allreduce

import (
	"context"
	"fmt"
	"sync"
	"unsafe"
)

// Pending is an all-reduce started by Start.
type Pending struct {
	ctx  context.Context
	buf  []float32
	done chan struct{}
	err  error
}

// Wait blocks until the all-reduce has finished and returns its error.
func (p *Pending) Wait() error {
	<-p.done
	return p.err
}

// Done is closed when the all-reduce has finished.
func (p *Pending) Done() <-chan struct{} { return p.done }

// fuseQueue runs started all-reduces one after another on a background
// goroutine, in the order they were started.
type fuseQueue struct {
	r       *Ring
	mu      sync.Mutex
	queue   []*Pending
	wake    chan struct{}
	quit    chan struct{}
	exited  chan struct{}
	running bool
	stopped bool
}

func (q *fuseQueue) init(r *Ring) {
	q.r = r
	q.wake = make(chan struct{}, 1)
	q.quit = make(chan struct{})
	q.exited = make(chan struct{})
}

func (q *fuseQueue) push(p *Pending) {
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		p.err = q.r.peerError(opNames[opAllReduce], q.r.left(), ErrClosed)
		close(p.done)
		return
	}
	q.queue = append(q.queue, p)
	if !q.running {
		q.running = true
		go q.loop()
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *fuseQueue) loop() {
	defer close(q.exited)
	for {
		q.mu.Lock()
		var p *Pending
		if len(q.queue) > 0 {
			p = q.queue[0]
			q.queue[0] = nil
			q.queue = q.queue[1:]
		}
		q.mu.Unlock()
		if p != nil {
			p.err = q.r.AllReduce(p.ctx, p.buf)
			close(p.done)
			continue
		}
		select {
		case <-q.wake:
		case <-q.quit:
			return
		}
	}
}

// stop ends the worker; queued buckets fail with ErrClosed (the ring is
// already broken when stop is called, so a bucket in progress fails fast).
func (q *fuseQueue) stop() {
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		return
	}
	q.stopped = true
	running := q.running
	rest := q.queue
	q.queue = nil
	q.mu.Unlock()
	close(q.quit)
	if running {
		<-q.exited
	}
	for _, p := range rest {
		p.err = q.r.peerError(opNames[opAllReduce], q.r.left(), ErrClosed)
		close(p.done)
	}
}

// Start begins an all-reduce of bucket and returns at once; the caller
// must not touch bucket until Wait returns. Buckets are reduced one after
// another in the order they were started, overlapping the caller's work
// (typically the backward pass producing the next bucket); every rank must
// start the same buckets in the same order. Do not mix Start with direct
// collectives on the same ring without waiting first.
func (r *Ring) Start(ctx context.Context, bucket []float32) *Pending {
	p := &Pending{ctx: ctx, buf: bucket, done: make(chan struct{})}
	r.fuse.push(p)
	return p
}

// Fuser groups gradient slices that become ready during the backward pass
// (in reverse layer order) into buckets of about Config.BucketBytes and
// starts the all-reduce of each bucket as soon as it is full.
//
// Every slice passed to Add must be a subslice of the gradient buffer given
// to NewFuser. Adjacent slices are merged into one bucket; a slice that is
// not adjacent to the open bucket closes it.
type Fuser struct {
	r       *Ring
	ctx     context.Context
	grads   []float32
	maxElem int
	lo, hi  int // open bucket: grads[lo:hi]; lo == hi when none
	pending []*Pending
}

// NewFuser returns a Fuser reducing parts of grads.
func (r *Ring) NewFuser(ctx context.Context, grads []float32) *Fuser {
	return &Fuser{r: r, ctx: ctx, grads: grads, maxElem: max(1, r.cfg.BucketBytes/4)}
}

// Add marks g, a subslice of the gradient buffer, as ready.
func (f *Fuser) Add(g []float32) error {
	if len(g) == 0 {
		return nil
	}
	off, ok := OffsetIn(f.grads, g)
	if !ok {
		return fmt.Errorf("allreduce: fuser: slice of %d elements is not inside the gradient buffer", len(g))
	}
	switch {
	case f.lo == f.hi:
		f.lo, f.hi = off, off+len(g)
	case off+len(g) == f.lo:
		f.lo = off
	case off == f.hi:
		f.hi = off + len(g)
	default:
		f.flush()
		f.lo, f.hi = off, off+len(g)
	}
	if f.hi-f.lo >= f.maxElem {
		f.flush()
	}
	return nil
}

func (f *Fuser) flush() {
	if f.lo == f.hi {
		return
	}
	f.pending = append(f.pending, f.r.Start(f.ctx, f.grads[f.lo:f.hi]))
	f.lo, f.hi = 0, 0
}

// Wait starts the open bucket, waits for every bucket and returns the first
// error. The Fuser can then be used for the next step.
func (f *Fuser) Wait() error {
	f.flush()
	var first error
	for _, p := range f.pending {
		if err := p.Wait(); err != nil && first == nil {
			first = err
		}
	}
	f.pending = f.pending[:0]
	return first
}

// OffsetIn returns the index of g[0] in buf if g lies inside buf (a view
// of a gradient buffer handed over slice by slice).
func OffsetIn(buf, g []float32) (int, bool) {
	if len(buf) == 0 {
		return 0, false
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(g)))
	if p < base || (p-base)%4 != 0 {
		return 0, false
	}
	off := int((p - base) / 4)
	if off+len(g) > len(buf) {
		return 0, false
	}
	return off, true
}

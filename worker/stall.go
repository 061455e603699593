package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/infonce/infonce/allreduce"
)

// StallPolicy sets the deadline of each collective of a training step from
// the measured durations of the same collective (the same operation on
// buffers of the same size in a ring of the same size):
//
//	d = min(Ceiling, max(Floor, Mult · max(t₁, …, t_W)))
//
// where t₁…t_W are the last W successful runs. A neighbour that vanishes
// without closing its sockets (a machine powered off, a cable pulled, a
// container killed behind a firewall) stalls the ring: the stall ends
// after d, a few times the slowest recent run, instead of after one long
// fixed timeout. Until a collective has been measured its deadline is
// Ceiling.
type StallPolicy struct {
	// Floor is the least deadline: it absorbs the waits for a slower rank
	// that a loaded machine adds now and then.
	Floor time.Duration
	// Ceiling is the deadline of a collective not yet measured, and the
	// most any deadline can be (the worker's --op-timeout).
	Ceiling time.Duration
	// Mult multiplies the slowest of the last Window runs.
	Mult   float64
	Window int
}

// DefaultStallPolicy is the worker's policy under a ceiling (--op-timeout;
// 0: allreduce.DefaultTimeout): four times the slowest of the last 32 runs
// of a collective, at least one second.
func DefaultStallPolicy(ceiling time.Duration) StallPolicy {
	if ceiling <= 0 {
		ceiling = allreduce.DefaultTimeout
	}
	return StallPolicy{Floor: min(time.Second, ceiling), Ceiling: ceiling, Mult: 4, Window: 32}
}

// collectiveKind names the collectives a step runs.
type collectiveKind uint8

const (
	kindAllGather collectiveKind = iota + 1
	kindAllReduce
	kindBucket // a gradient bucket reduced beside the backward pass
)

// collectiveKey identifies "the same collective".
type collectiveKey struct {
	kind  collectiveKind
	n     int // elements (bytes for a gather)
	world int
}

// durations is a ring buffer of the last runs of one collective.
type durations struct {
	t    []time.Duration
	next int
}

func (d *durations) add(x time.Duration, w int) {
	if len(d.t) < w {
		d.t = append(d.t, x)
		return
	}
	d.t[d.next] = x
	d.next = (d.next + 1) % w
}

func (d *durations) max() time.Duration {
	var m time.Duration
	for _, x := range d.t {
		m = max(m, x)
	}
	return m
}

// stallDeadlines holds the measured durations of a worker's collectives
// across its generations, and computes their deadlines (StallPolicy).
type stallDeadlines struct {
	p    StallPolicy
	mu   sync.Mutex
	runs map[collectiveKey]*durations
}

func newStallDeadlines(p StallPolicy) *stallDeadlines {
	return &stallDeadlines{p: p, runs: map[collectiveKey]*durations{}}
}

// deadline is d of the policy for collective k.
func (s *stallDeadlines) deadline(k collectiveKey) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.runs[k]
	if r == nil || len(r.t) == 0 {
		return s.p.Ceiling
	}
	d := time.Duration(s.p.Mult * float64(r.max()))
	return min(s.p.Ceiling, max(s.p.Floor, d))
}

// record adds a successful run of collective k.
func (s *stallDeadlines) record(k collectiveKey, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.runs[k]
	if r == nil {
		r = &durations{}
		s.runs[k] = r
	}
	r.add(took, max(1, s.p.Window))
}

// wrap returns comm with the policy's deadline on each collective; it
// reduces in the background (Start) when comm does.
func (s *stallDeadlines) wrap(comm Comm[float32]) Comm[float32] {
	c := &stallComm{inner: comm, s: s, world: comm.Size()}
	if bg, ok := comm.(backgroundReducer); ok {
		return &stallBackground{stallComm: c, bg: bg}
	}
	return c
}

// stallComm is a Comm whose every collective runs under the deadline of
// its stallDeadlines, and whose successful runs are measured for the next
// deadlines.
type stallComm struct {
	inner Comm[float32]
	s     *stallDeadlines
	world int
}

// stallBackground is a stallComm over a Comm that reduces in the
// background (the ring): Start too runs under the deadline.
type stallBackground struct {
	*stallComm
	bg backgroundReducer
}

func (c *stallComm) Rank() int { return c.inner.Rank() }
func (c *stallComm) Size() int { return c.inner.Size() }

// run runs op under the deadline of k and records its duration when it
// succeeds.
func (c *stallComm) run(ctx context.Context, k collectiveKey, op func(context.Context) error) error {
	d := c.s.deadline(k)
	dctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	err := op(dctx)
	if err == nil {
		c.s.record(k, time.Since(start))
		return nil
	}
	return c.explain(ctx, dctx, d, err)
}

// explain names the stall deadline in an error it caused.
func (c *stallComm) explain(parent, dctx context.Context, d time.Duration, err error) error {
	if parent.Err() == nil && errors.Is(dctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w (stall deadline %v: %g × the slowest of the last %d runs of this collective, at least %v)",
			err, d.Round(time.Millisecond), c.s.p.Mult, c.s.p.Window, c.s.p.Floor)
	}
	return err
}

func (c *stallComm) AllGather(ctx context.Context, send, recv []byte, counts []int) error {
	return c.run(ctx, collectiveKey{kindAllGather, len(recv), c.world}, func(ctx context.Context) error {
		return c.inner.AllGather(ctx, send, recv, counts)
	})
}

func (c *stallComm) AllReduce(ctx context.Context, buf []float32) error {
	return c.run(ctx, collectiveKey{kindAllReduce, len(buf), c.world}, func(ctx context.Context) error {
		return c.inner.AllReduce(ctx, buf)
	})
}

// Start starts the background all-reduce of a gradient bucket under the
// deadline of its collective, counted from the start (the bucket may wait
// behind the buckets started before it, as it did when it was measured).
func (c *stallBackground) Start(ctx context.Context, buf []float32) *allreduce.Pending {
	k := collectiveKey{kindBucket, len(buf), c.world}
	d := c.s.deadline(k)
	dctx, cancel := context.WithTimeout(ctx, d)
	start := time.Now()
	p := c.bg.Start(dctx, buf)
	go func() {
		<-p.Done()
		if p.Wait() == nil {
			c.s.record(k, time.Since(start))
		}
		cancel()
	}()
	return p
}

var _ backgroundReducer = (*stallBackground)(nil)

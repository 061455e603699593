package worker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infonce/infonce/coordinator"
	"github.com/infonce/infonce/worker/membership"
)

// ctlRetry is how long a worker goes without telling the coordinator of
// its boundaries and progress after such a report failed: a coordinator
// that is down or restarting must not be flooded.
const ctlRetry = 2 * time.Second

// boundaryEvery is the time between two Boundary reports. A worker waiting
// to join is admitted at the first boundary reported after it arrived; the
// coordinator asks for that one at once (Client.BoundaryWanted), so the
// periodic report only backs that request up. Every report wakes the
// coordinator, which on a machine whose cores all train takes a core from
// a rank, and every rank waits with that one (reports every 100 ms
// against every second: docs/SCALING.md, "Worker defaults").
const boundaryEvery = time.Second

// reporter tells the coordinator, off the training loop, of the step
// boundaries this worker reaches (Boundary, every boundaryEvery and when
// the coordinator asks) and of its progress (Report, as the loop hands it
// over). The loop never waits for
// the coordinator: on a machine whose cores are all training, a round trip
// to the coordinator waits for the scheduler to run it, and every rank
// waited with the one that asked. A joiner admitted at a boundary the
// reporter announced starts a generation that the loop learns of at its
// next step (from the reporter or the control stream); a rank that had
// already begun that step finds the ring closed and stops there too.
type reporter struct {
	m      *member
	gen    uint64
	step   atomic.Int64  // the boundary reached last: before this step
	newer  atomic.Uint64 // a newer generation the coordinator named
	mu     sync.Mutex
	prog   *coordinator.Progress // to send
	kick   chan struct{}         // a progress report is waiting
	cancel context.CancelFunc
	done   chan struct{}
}

// startReporter starts the reporter of generation gen; stop ends it.
func (m *member) startReporter(ctx context.Context, gen uint64) *reporter {
	ctx, cancel := context.WithCancel(ctx)
	r := &reporter{m: m, gen: gen, kick: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	r.step.Store(-1)
	go r.run(ctx)
	return r
}

func (r *reporter) run(ctx context.Context) {
	defer close(r.done)
	tick := time.NewTicker(boundaryEvery)
	defer tick.Stop()
	policy := membership.NewReports(ctlRetry)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-r.kick:
		case <-r.m.client.BoundaryWanted():
			// A joiner waits for the next boundary: report it now.
		}
		step := r.step.Load()
		quiet, boundary := policy.Wake(time.Now(), step)
		if quiet {
			continue
		}
		if boundary {
			bctx, cancel := context.WithTimeout(coordinator.NoRetry(ctx), 500*time.Millisecond)
			newer, err := r.m.client.Boundary(bctx, r.gen, step)
			cancel()
			if err != nil {
				policy.Failed(time.Now())
				continue
			}
			if newer > r.gen {
				r.newer.Store(newer)
			}
		}
		r.mu.Lock()
		p := r.prog
		r.prog = nil
		r.mu.Unlock()
		if p != nil {
			rctx, cancel := context.WithTimeout(coordinator.NoRetry(ctx), 500*time.Millisecond)
			err := r.m.client.Report(rctx, r.gen, *p)
			cancel()
			if err != nil {
				policy.Failed(time.Now())
			}
		}
	}
}

// progress hands a progress report over; the reporter sends the newest.
func (r *reporter) progress(p coordinator.Progress) {
	r.mu.Lock()
	r.prog = &p
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// stop ends the reporter and waits for it.
func (r *reporter) stop() {
	r.cancel()
	<-r.done
}

// boundary marks the boundary before step as reached and returns the
// newest generation known there: the one the control stream delivered or
// the one the coordinator named when told of an earlier boundary.
func (r *reporter) boundary(step int64) uint64 {
	r.step.Store(step)
	r.m.mu.Lock()
	newest := r.m.latest.Generation
	r.m.mu.Unlock()
	return max(newest, r.newer.Load())
}

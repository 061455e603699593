package worker

import (
	"runtime"
	"sync"
)

// rowPool runs one row function over contiguous ranges of rows on a fixed
// set of goroutines, so that the per-sample work of a step (augmentation)
// uses every core without allocating per step.
type rowPool struct {
	work  chan [2]int
	wg    sync.WaitGroup
	fn    func(lo, hi int)
	procs int
	once  sync.Once
}

func newRowPool(fn func(lo, hi int)) *rowPool {
	return &rowPool{fn: fn, procs: runtime.GOMAXPROCS(0)}
}

// run calls fn over [0, n) split into as many ranges as there are
// processors, and returns when every range is done.
func (p *rowPool) run(n int) {
	parts := min(p.procs, n/8)
	if parts <= 1 {
		p.fn(0, n)
		return
	}
	p.once.Do(func() {
		p.work = make(chan [2]int, p.procs)
		for range p.procs - 1 {
			go func() {
				for r := range p.work {
					p.fn(r[0], r[1])
					p.wg.Done()
				}
			}()
		}
	})
	p.wg.Add(parts - 1)
	for w := 1; w < parts; w++ {
		p.work <- [2]int{w * n / parts, (w + 1) * n / parts}
	}
	p.fn(0, n/parts)
	p.wg.Wait()
}

// close stops the pool's goroutines.
func (p *rowPool) close() {
	p.once.Do(func() {})
	if p.work != nil {
		close(p.work)
	}
}

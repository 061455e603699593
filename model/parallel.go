package model

import (
	"runtime"
	"sync"
)

// parallelFor splits the index range [0, n) of a layer's independent units
// of work (rows, sequences × heads, chunks) into up to GOMAXPROCS
// contiguous parts and runs body(k, lo, hi) for part k on a goroutine of
// its own, the first part on the calling goroutine, and returns when all
// are done. Part k covers [k·n/P, (k+1)·n/P); P is at most n/minPer, so a
// small range stays on one goroutine.
//
// A layer keeps one parallelFor and one body (a method value made once, so
// that a step allocates nothing) and passes k to pick its scratch space.
// Bodies that write disjoint outputs give the same bits for any P; a body
// that sums across units must sum in an order that does not depend on P.
type parallelFor struct {
	parts []parallelPart
	wg    sync.WaitGroup
}

// parallelPart is one part of a parallelFor, handed to its goroutine
// through parallelHandoff, which keeps the call allocation-free.
type parallelPart struct {
	k, lo, hi int
	body      func(k, lo, hi int)
	wg        *sync.WaitGroup
}

var parallelHandoff = make(chan *parallelPart, 64)

func parallelWorker() {
	p := <-parallelHandoff
	p.body(p.k, p.lo, p.hi)
	p.wg.Done()
}

// numParts returns the number of parts run(n, minPer, …) uses, for sizing
// scratch space before the call.
func (*parallelFor) numParts(n, minPer int) int {
	return max(1, min(runtime.GOMAXPROCS(0), n/max(1, minPer)))
}

// run calls body over the parts of [0, n) and returns their number.
func (f *parallelFor) run(n, minPer int, body func(k, lo, hi int)) int {
	P := f.numParts(n, minPer)
	if P == 1 {
		body(0, 0, n)
		return 1
	}
	for len(f.parts) < P {
		f.parts = append(f.parts, parallelPart{})
	}
	for k := range P {
		f.parts[k] = parallelPart{k: k, lo: k * n / P, hi: (k + 1) * n / P, body: body, wg: &f.wg}
	}
	f.wg.Add(P - 1)
	for k := 1; k < P; k++ {
		go parallelWorker()
		parallelHandoff <- &f.parts[k]
	}
	body(0, f.parts[0].lo, f.parts[0].hi)
	f.wg.Wait()
	return P
}

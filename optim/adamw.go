package optim

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/vec"
)

// AdamWConfig configures AdamW.
type AdamWConfig struct {
	Beta1, Beta2 float64 // moment decay rates, in [0, 1); CLIP uses β₂ = 0.98
	Eps          float64 // ε > 0 in the denominator √v̂ + ε
	WeightDecay  float64 // λ ≥ 0, decoupled
}

// DefaultAdamWConfig is β₁ = 0.9, β₂ = 0.999, ε = 1e-8, no weight decay.
func DefaultAdamWConfig() AdamWConfig {
	return AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}
}

func (c AdamWConfig) validate() error {
	var errs []error
	for _, b := range []struct {
		name string
		v    float64
	}{{"β₁", c.Beta1}, {"β₂", c.Beta2}} {
		if !(b.v >= 0 && b.v < 1) {
			errs = append(errs, fmt.Errorf("optim: AdamW %s = %v, want in [0, 1)", b.name, b.v))
		}
	}
	if !(c.Eps > 0) || math.IsInf(c.Eps, 0) {
		errs = append(errs, fmt.Errorf("optim: AdamW ε = %v, want > 0 (start from DefaultAdamWConfig)", c.Eps))
	}
	if err := checkFinite("AdamW weight decay", c.WeightDecay); err != nil || c.WeightDecay < 0 {
		errs = append(errs, fmt.Errorf("optim: AdamW weight decay %v, want ≥ 0", c.WeightDecay))
	}
	return errors.Join(errs...)
}

// AdamW is Adam with decoupled weight decay (Loshchilov & Hutter 2019,
// Algorithm 2 with the schedule multiplier folded into lr). At step t
// (1-based):
//
//	m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,
//	m̂ = m/(1−β₁ᵗ),  v̂ = v/(1−β₂ᵗ),
//	w ← w − lr·(m̂/(√v̂ + ε) + λw),
//
// with λ = 0 for NoDecay tensors. Float64 buffers are updated in float64
// arithmetic; float32 buffers in float32 arithmetic by the vectorised
// vec.AdamW (correctly rounded square root and division).
type AdamW[T gemm.Float] struct {
	cfg  AdamWConfig
	n    int
	segs []segment
	m, v []T
	t    int64
	err  error

	par parallel32 // the float32 update split over GOMAXPROCS goroutines
}

// NewAdamW builds AdamW for a buffer of n elements. An invalid configuration
// or invalid groups make every Step return the error (New reports it at
// once).
func NewAdamW[T gemm.Float](n int, groups []Group, cfg AdamWConfig) *AdamW[T] {
	o := &AdamW[T]{cfg: cfg, n: n}
	var gerr error
	o.segs, gerr = segments(n, groups)
	o.err = errors.Join(gerr, cfg.validate())
	if o.err == nil {
		o.m, o.v = make([]T, n), make([]T, n)
	}
	return o
}

// Step implements Optimizer.
func (o *AdamW[T]) Step(w, g []T, lr T) error {
	if o.err != nil {
		return o.err
	}
	if err := checkLen("AdamW", o.n, w, g); err != nil {
		return err
	}
	t := float64(o.t + 1)
	b1, b2, eps := o.cfg.Beta1, o.cfg.Beta2, o.cfg.Eps
	bc1 := 1 - math.Pow(b1, t) // bias corrections 1−β₁ᵗ, 1−β₂ᵗ
	bc2 := 1 - math.Pow(b2, t)
	eta := float64(lr)
	if w32, ok := any(w).([]float32); ok {
		// float32: the same update in float32 arithmetic, vectorised, on
		// parts of the buffer in parallel.
		st := vec.AdamWStep{Beta1: float32(b1), Beta2: float32(b2), Bias1: float32(bc1), Bias2: float32(bc2),
			Eps: float32(eps), LR: float32(eta)}
		o.par.run(o.segs, w32, any(g).([]float32), any(o.m).([]float32), any(o.v).([]float32), st, float32(o.cfg.WeightDecay))
		o.t++
		return nil
	}
	for _, s := range o.segs {
		lambda := 0.0
		if s.decay {
			lambda = o.cfg.WeightDecay
		}
		ws, gs := w[s.off:s.off+s.len], g[s.off:s.off+s.len]
		ms, vs := o.m[s.off:s.off+s.len], o.v[s.off:s.off+s.len]
		for i := range ws {
			gi := float64(gs[i])
			mi := T(b1*float64(ms[i]) + (1-b1)*gi)
			vi := T(b2*float64(vs[i]) + (1-b2)*gi*gi)
			ms[i], vs[i] = mi, vi
			mHat := float64(mi) / bc1
			vHat := float64(vi) / bc2
			wi := float64(ws[i])
			ws[i] = T(wi - eta*(mHat/(math.Sqrt(vHat)+eps)+lambda*wi))
		}
	}
	o.t++
	return nil
}

// State implements Optimizer: the first moment "m", then the second moment
// "v".
func (o *AdamW[T]) State() []Buffer[T] {
	if o.err != nil {
		return nil
	}
	return []Buffer[T]{{Name: "m", Data: o.m}, {Name: "v", Data: o.v}}
}

// SetStep implements Optimizer.
func (o *AdamW[T]) SetStep(n int64) { o.t = n }

// StepCount implements Optimizer.
func (o *AdamW[T]) StepCount() int64 { return o.t }

// parallelMin is the buffer size below which the float32 update runs on
// the calling goroutine: starting a goroutine costs about a microsecond.
const parallelMin = 1 << 16

// parallel32 runs the float32 AdamW update over parts of the flat buffer
// on up to GOMAXPROCS goroutines. Every part boundary inside a segment lies
// a multiple of 8 elements past the segment's start, so each element goes
// through the same code (vector body or scalar tail of vec.AdamW) as in one
// call per segment: the result has the same bits whatever the number of
// parts. The parts are handed to freshly started goroutines through a
// channel, which keeps a step free of allocations.
type parallel32 struct {
	parts []adamWPart
	wg    sync.WaitGroup
}

// adamWPart is one goroutine's share [lo, hi) of a float32 update.
type adamWPart struct {
	segs       []segment
	w, g, m, v []float32
	st         vec.AdamWStep
	decay      float32 // λ of the decayed segments
	lo, hi     int
	wg         *sync.WaitGroup
}

var adamWHandoff = make(chan *adamWPart, 16)

func adamWWorker() {
	p := <-adamWHandoff
	p.update()
	p.wg.Done()
}

func (p *parallel32) run(segs []segment, w, g, m, v []float32, st vec.AdamWStep, decay float32) {
	n := len(w)
	np := 1
	if procs := runtime.GOMAXPROCS(0); procs > 1 && n >= parallelMin {
		np = min(procs, n/(parallelMin/2))
	}
	if cap(p.parts) < np {
		p.parts = make([]adamWPart, np)
	}
	p.parts = p.parts[:np]
	lo := 0
	for i := range p.parts {
		hi := alignedCut(segs, (i+1)*n/np)
		p.parts[i] = adamWPart{segs: segs, w: w, g: g, m: m, v: v, st: st, decay: decay, lo: lo, hi: hi, wg: &p.wg}
		lo = hi
	}
	p.wg.Add(np - 1)
	for i := 1; i < np; i++ {
		go adamWWorker()
		adamWHandoff <- &p.parts[i]
	}
	p.parts[0].update()
	p.wg.Wait()
	for i := range p.parts {
		p.parts[i] = adamWPart{} // do not retain the caller's buffers
	}
}

// alignedCut moves x down to the nearest point a multiple of 8 elements
// past the start of the segment that contains it.
func alignedCut(segs []segment, x int) int {
	for _, s := range segs {
		if x > s.off && x < s.off+s.len {
			return s.off + (x-s.off)&^7
		}
	}
	return x
}

// update applies the step to the elements [lo, hi) segment by segment.
func (p *adamWPart) update() {
	for _, s := range p.segs {
		a, b := max(p.lo, s.off), min(p.hi, s.off+s.len)
		if a >= b {
			continue
		}
		st := p.st
		if s.decay {
			st.Decay = p.decay
		}
		vec.AdamW(p.w[a:b], p.g[a:b], p.m[a:b], p.v[a:b], st)
	}
}

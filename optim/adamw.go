package optim

import (
	"errors"
	"fmt"
	"math"

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
	w32, is32 := any(w).([]float32)
	for _, s := range o.segs {
		lambda := 0.0
		if s.decay {
			lambda = o.cfg.WeightDecay
		}
		if is32 {
			// float32: the same update in float32 arithmetic, vectorised.
			seg := func(x []T) []float32 { return any(x).([]float32)[s.off : s.off+s.len] }
			vec.AdamW(w32[s.off:s.off+s.len], seg(g), seg(o.m), seg(o.v), vec.AdamWStep{
				Beta1: float32(b1), Beta2: float32(b2), Bias1: float32(bc1), Bias2: float32(bc2),
				Eps: float32(eps), LR: float32(eta), Decay: float32(lambda)})
			continue
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

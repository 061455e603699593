package optim

import (
	"errors"
	"fmt"
	"math"

	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/vec"
)

// LARSConfig configures LARS.
type LARSConfig struct {
	Momentum    float64 // μ in [0, 1)
	WeightDecay float64 // λ ≥ 0
	Eta         float64 // trust coefficient η_T > 0
	Eps         float64 // ε ≥ 0 in the trust ratio's denominator
}

// DefaultLARSConfig is μ = 0.9, η_T = 0.001, ε = 1e-9, no weight decay.
func DefaultLARSConfig() LARSConfig {
	return LARSConfig{Momentum: 0.9, Eta: 0.001, Eps: 1e-9}
}

func (c LARSConfig) validate() error {
	var errs []error
	if !(c.Momentum >= 0 && c.Momentum < 1) {
		errs = append(errs, fmt.Errorf("optim: LARS momentum %v, want in [0, 1)", c.Momentum))
	}
	if err := checkFinite("LARS weight decay", c.WeightDecay); err != nil || c.WeightDecay < 0 {
		errs = append(errs, fmt.Errorf("optim: LARS weight decay %v, want ≥ 0", c.WeightDecay))
	}
	if !(c.Eta > 0) || math.IsInf(c.Eta, 0) {
		errs = append(errs, fmt.Errorf("optim: LARS trust coefficient η = %v, want > 0 (start from DefaultLARSConfig)", c.Eta))
	}
	if !(c.Eps >= 0) || math.IsInf(c.Eps, 0) {
		errs = append(errs, fmt.Errorf("optim: LARS ε = %v, want ≥ 0", c.Eps))
	}
	return errors.Join(errs...)
}

// LARS is layer-wise adaptive rate scaling (You, Gitman & Ginsburg 2017) with
// momentum, as used for large-batch SimCLR. For every decayed tensor the
// local trust ratio is
//
//	r = η_T‖w‖ / (‖g‖ + λ‖w‖ + ε)   (r = 1 if ‖w‖ = 0 or ‖g‖ = 0),
//
// and then
//
//	g' = g + λw;  b ← μb + r·g';  w ← w − lr·b.
//
// NoDecay tensors use r = 1 and λ = 0: plain momentum SGD.
type LARS[T gemm.Float] struct {
	cfg  LARSConfig
	n    int
	segs []segment
	b    []T
	t    int64
	err  error
}

// NewLARS builds LARS for a buffer of n elements. An invalid configuration
// or invalid groups make every Step return the error (New reports it at
// once).
func NewLARS[T gemm.Float](n int, groups []Group, cfg LARSConfig) *LARS[T] {
	o := &LARS[T]{cfg: cfg, n: n}
	var gerr error
	o.segs, gerr = segments(n, groups)
	o.err = errors.Join(gerr, cfg.validate())
	if o.err == nil {
		o.b = make([]T, n)
	}
	return o
}

// TrustRatio is LARS's local learning-rate multiplier
// η_T‖w‖/(‖g‖ + λ‖w‖ + ε) for the norms wNorm = ‖w‖ and gNorm = ‖g‖ of one
// tensor; it is 1 when either norm is zero.
func TrustRatio(wNorm, gNorm, eta, lambda, eps float64) float64 {
	if wNorm == 0 || gNorm == 0 {
		return 1
	}
	return eta * wNorm / (gNorm + lambda*wNorm + eps)
}

// Step implements Optimizer.
func (o *LARS[T]) Step(w, g []T, lr T) error {
	if o.err != nil {
		return o.err
	}
	if err := checkLen("LARS", o.n, w, g); err != nil {
		return err
	}
	eta, mu := float64(lr), o.cfg.Momentum
	for _, s := range o.segs {
		ws, gs, bs := w[s.off:s.off+s.len], g[s.off:s.off+s.len], o.b[s.off:s.off+s.len]
		r, lambda := 1.0, 0.0
		if s.decay {
			lambda = o.cfg.WeightDecay
			r = TrustRatio(norm2(ws), norm2(gs), o.cfg.Eta, lambda, o.cfg.Eps)
		}
		for i := range ws {
			wi := float64(ws[i])
			gi := float64(gs[i]) + lambda*wi
			bi := T(mu*float64(bs[i]) + r*gi)
			bs[i] = bi
			ws[i] = T(wi - eta*float64(bi))
		}
	}
	o.t++
	return nil
}

// State implements Optimizer: the momentum buffer "momentum".
func (o *LARS[T]) State() []Buffer[T] {
	if o.err != nil {
		return nil
	}
	return []Buffer[T]{{Name: "momentum", Data: o.b}}
}

// SetStep implements Optimizer.
func (o *LARS[T]) SetStep(n int64) { o.t = n }

// StepCount implements Optimizer.
func (o *LARS[T]) StepCount() int64 { return o.t }

// norm2 is the Euclidean norm, accumulated in float64 (for float32 by
// vec.Dot, whose products and sum are float64).
func norm2[T gemm.Float](x []T) float64 {
	if x32, ok := any(x).([]float32); ok {
		return math.Sqrt(vec.Dot(x32, x32))
	}
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s)
}

package optim

import (
	"errors"
	"fmt"

	"github.com/infonce/infonce/gemm"
)

// SGDConfig configures stochastic gradient descent with momentum.
type SGDConfig struct {
	Momentum    float64 // μ ≥ 0; 0 is plain SGD
	Nesterov    bool    // Nesterov momentum (requires μ > 0)
	WeightDecay float64 // λ ≥ 0, coupled (added to the gradient)
}

// DefaultSGDConfig is momentum 0.9, no Nesterov, no weight decay.
func DefaultSGDConfig() SGDConfig { return SGDConfig{Momentum: 0.9} }

func (c SGDConfig) validate() error {
	var errs []error
	if err := checkFinite("SGD momentum", c.Momentum); err != nil || c.Momentum < 0 {
		errs = append(errs, fmt.Errorf("optim: SGD momentum %v, want ≥ 0", c.Momentum))
	}
	if c.Nesterov && !(c.Momentum > 0) {
		errs = append(errs, errors.New("optim: Nesterov SGD needs momentum > 0"))
	}
	if err := checkFinite("SGD weight decay", c.WeightDecay); err != nil || c.WeightDecay < 0 {
		errs = append(errs, fmt.Errorf("optim: SGD weight decay %v, want ≥ 0", c.WeightDecay))
	}
	return errors.Join(errs...)
}

// SGD is stochastic gradient descent with optional (Nesterov) momentum and
// coupled weight decay, in the form of PyTorch's torch.optim.SGD without
// dampening:
//
//	g' = g + λw (decayed tensors);  b ← μb + g';  w ← w − lr·b,
//
// or with Nesterov momentum w ← w − lr·(g' + μb). The momentum buffer b
// starts at zero, so the first step has b = g'.
type SGD[T gemm.Float] struct {
	cfg  SGDConfig
	n    int
	segs []segment
	b    []T // momentum buffer; nil when μ = 0
	t    int64
	err  error
}

// NewSGD builds SGD for a buffer of n elements. An invalid configuration or
// invalid groups make every Step return the error (New reports it at once).
func NewSGD[T gemm.Float](n int, groups []Group, cfg SGDConfig) *SGD[T] {
	o := &SGD[T]{cfg: cfg, n: n}
	var gerr error
	o.segs, gerr = segments(n, groups)
	o.err = errors.Join(gerr, cfg.validate())
	if o.err == nil && cfg.Momentum > 0 {
		o.b = make([]T, n)
	}
	return o
}

// Step implements Optimizer.
func (o *SGD[T]) Step(w, g []T, lr T) error {
	if o.err != nil {
		return o.err
	}
	if err := checkLen("SGD", o.n, w, g); err != nil {
		return err
	}
	eta, mu := float64(lr), o.cfg.Momentum
	for _, s := range o.segs {
		lambda := 0.0
		if s.decay {
			lambda = o.cfg.WeightDecay
		}
		ws, gs := w[s.off:s.off+s.len], g[s.off:s.off+s.len]
		if o.b == nil {
			for i := range ws {
				wi := float64(ws[i])
				ws[i] = T(wi - eta*(float64(gs[i])+lambda*wi))
			}
			continue
		}
		bs := o.b[s.off : s.off+s.len]
		for i := range ws {
			wi := float64(ws[i])
			gi := float64(gs[i]) + lambda*wi
			bi := T(mu*float64(bs[i]) + gi)
			bs[i] = bi
			d := float64(bi)
			if o.cfg.Nesterov {
				d = gi + mu*d
			}
			ws[i] = T(wi - eta*d)
		}
	}
	o.t++
	return nil
}

// State implements Optimizer: the momentum buffer "momentum", or nothing
// for plain SGD.
func (o *SGD[T]) State() []Buffer[T] {
	if o.b == nil {
		return nil
	}
	return []Buffer[T]{{Name: "momentum", Data: o.b}}
}

// SetStep implements Optimizer.
func (o *SGD[T]) SetStep(n int64) { o.t = n }

// StepCount implements Optimizer.
func (o *SGD[T]) StepCount() int64 { return o.t }

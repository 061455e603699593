package optim

import (
	"math"

	"github.com/infonce/infonce/gemm"
)

// WarmupCosine is the learning-rate schedule of CLIP and SimCLR: a linear
// warm-up from 0 to Base over the first Warmup steps, then a cosine decay
// from Base to Min that reaches Min at step Total and stays there.
type WarmupCosine struct {
	Base, Min     float64
	Warmup, Total int64
}

// At returns the learning rate of step (0-based):
//
//	η(s) = Base·s/Warmup                                    for s < Warmup,
//	η(s) = Min + (Base−Min)·(1 + cos(π(s−Warmup)/(Total−Warmup)))/2   for Warmup ≤ s < Total,
//	η(s) = Min                                              for s ≥ Total (once warm-up is over).
//
// Negative steps count as step 0.
func (s WarmupCosine) At(step int64) float64 {
	step = max(step, 0)
	if step < s.Warmup {
		return s.Base * float64(step) / float64(s.Warmup)
	}
	if step >= s.Total {
		return s.Min
	}
	p := float64(step-s.Warmup) / float64(s.Total-s.Warmup)
	return s.Min + (s.Base-s.Min)*(1+math.Cos(math.Pi*p))/2
}

// ClipGlobalNorm scales g in place so that ‖g‖₂ ≤ maxNorm and returns the
// norm before clipping, accumulated in float64 (gradient clipping by global
// norm, Pascanu et al. 2013). It does nothing when maxNorm ≤ 0, and it leaves
// g unchanged when the norm is not finite, so that the caller can see the
// NaN or Inf in the returned norm and skip the step.
func ClipGlobalNorm[T gemm.Float](g []T, maxNorm float64) float64 {
	norm := norm2(g)
	if !(maxNorm > 0) || !(norm > maxNorm) || math.IsInf(norm, 0) {
		return norm
	}
	// Shrink the factor by a few units of roundoff of T so that rounding c
	// and the products cannot push the result above maxNorm.
	u := 0x1p-53
	if _, ok := any(g).([]float32); ok {
		u = 0x1p-24
	}
	c := T(maxNorm / norm * (1 - 4*u))
	for i := range g {
		g[i] *= c
	}
	return norm
}

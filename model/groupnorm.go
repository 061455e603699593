package model

import (
	"fmt"
	"math"

	"github.com/infonce/infonce/gemm"
)

// GroupNormEps is the ε of GroupNorm's variance, as in PyTorch.
const GroupNormEps = 1e-5

// GroupNorm is PyTorch's nn.GroupNorm over b feature maps of C channels of S
// = H·W positions each (NCHW): the C channels fall into G groups of C/G
// consecutive channels, and each group g of one image (C/G·S values) is
// normalised on its own, then each channel c gets a gain and a bias:
//
//	μ_g = mean_{c∈g, s} x_cs,  σ²_g = mean_{c∈g, s} (x_cs − μ_g)²,
//	r_g = 1/√(σ²_g + ε),  x̂_cs = (x_cs − μ_g) r_g,  y_cs = γ_c x̂_cs + β_c.
//
// Backward accumulates ∂L/∂γ_c += Σ dy_cs x̂_cs and ∂L/∂β_c += Σ dy_cs, and with
// d = dy ⊙ γ returns per group ∂L/∂x = r_g (d − mean_g(d) − x̂ mean_g(d ⊙ x̂)).
type GroupNorm[T gemm.Float] struct {
	C, G, S      int
	Eps          float64 // ε; 0 means GroupNormEps
	Gain, Bias   []T     // γ and β, C each
	DGain, DBias []T     // their gradients; nil for a parameter-only layer
	// Fast32 computes the float32 path with the kernels of package vec,
	// the groups of all images in parallel (see groupNorm32), rather than
	// one by one through float64; it keeps a reference to x for Backward
	// instead of x̂, so x must not change in between. The float64 path
	// ignores it.
	Fast32 bool

	xhat, y, dx []T
	rstd        []float64 // b × G
	fast        groupNorm32
	arenaRef[T]
	b          int
	ready, fwd bool // fwd: the last Forward took the Fast32 path
}

func (l *GroupNorm[T]) name() string { return fmt.Sprintf("groupnorm C=%d G=%d", l.C, l.G) }

// Forward normalises each group of each image and applies γ and β.
func (l *GroupNorm[T]) Forward(x []T, b int) ([]T, error) {
	l.ready = false
	if l.C <= 0 || l.G <= 0 || l.S <= 0 || l.C%l.G != 0 || len(l.Gain) != l.C || len(l.Bias) != l.C {
		return nil, fmt.Errorf("model: %s S=%d: want C, G, S > 0, G dividing C and γ, β of C elements (have %d, %d)", l.name(), l.S, len(l.Gain), len(l.Bias))
	}
	if err := checkBatch(len(x), b, l.C*l.S); err != nil {
		return nil, fmt.Errorf("model: %s: %w", l.name(), err)
	}
	eps := l.Eps
	if eps == 0 {
		eps = GroupNormEps
	}
	l.y = grow(l.y, len(x))
	if x32, ok := any(x).([]float32); ok && l.Fast32 {
		l.fast.forward(any(l.y).([]float32), x32, any(l.Gain).([]float32), any(l.Bias).([]float32), b, l.C, l.G, l.S, eps)
		l.b, l.ready, l.fwd = b, true, true
		return l.y, nil
	}
	l.xhat = grow(l.xhat, len(x))
	if cap(l.rstd) < b*l.G {
		l.rstd = make([]float64, b*l.G)
	}
	l.rstd = l.rstd[:b*l.G]
	cg := l.C / l.G
	m := cg * l.S // values per group
	for n := 0; n < b; n++ {
		for g := 0; g < l.G; g++ {
			off := (n*l.C + g*cg) * l.S
			xs := x[off : off+m]
			var mu float64
			for _, v := range xs {
				mu += float64(v)
			}
			mu /= float64(m)
			var v2 float64
			for _, v := range xs {
				d := float64(v) - mu
				v2 += d * d
			}
			r := 1 / math.Sqrt(v2/float64(m)+eps)
			l.rstd[n*l.G+g] = r
			for c := 0; c < cg; c++ {
				ch := g*cg + c
				gain, bias := l.Gain[ch], l.Bias[ch]
				lo := c * l.S
				xh, y := l.xhat[off+lo:off+lo+l.S], l.y[off+lo:off+lo+l.S]
				for s, v := range xs[lo : lo+l.S] {
					xh[s] = T((float64(v) - mu) * r)
					y[s] = gain*xh[s] + bias
				}
			}
		}
	}
	l.b, l.ready, l.fwd = b, true, false
	return l.y, nil
}

// Backward accumulates ∂L/∂γ and ∂L/∂β and returns ∂L/∂x.
func (l *GroupNorm[T]) Backward(dy []T) ([]T, error) {
	if !l.ready {
		return nil, fmt.Errorf("model: %s: %w", l.name(), errNoForward)
	}
	if err := checkGrad(len(dy), l.b*l.C*l.S); err != nil {
		return nil, fmt.Errorf("model: %s: %w", l.name(), err)
	}
	if len(l.DGain) != l.C || len(l.DBias) != l.C {
		return nil, fmt.Errorf("model: %s: %w", l.name(), errNoGrad)
	}
	l.dx = gradBuf(l.grads, l.dx, len(dy))
	if l.fwd {
		l.fast.backward(any(l.dx).([]float32), any(dy).([]float32), any(l.DGain).([]float32), any(l.DBias).([]float32))
		return l.dx, nil
	}
	cg := l.C / l.G
	m := cg * l.S
	for n := 0; n < l.b; n++ {
		for g := 0; g < l.G; g++ {
			off := (n*l.C + g*cg) * l.S
			var md, mdx float64 // mean_g(d), mean_g(d ⊙ x̂)
			for c := 0; c < cg; c++ {
				ch := g*cg + c
				gain := float64(l.Gain[ch])
				lo := off + c*l.S
				var sdy, sdyx float64
				for s, v := range dy[lo : lo+l.S] {
					xh := float64(l.xhat[lo+s])
					sdy += float64(v)
					sdyx += float64(v) * xh
				}
				l.DBias[ch] += T(sdy)
				l.DGain[ch] += T(sdyx)
				md += gain * sdy
				mdx += gain * sdyx
			}
			md /= float64(m)
			mdx /= float64(m)
			r := l.rstd[n*l.G+g]
			for c := 0; c < cg; c++ {
				gain := float64(l.Gain[g*cg+c])
				lo := off + c*l.S
				dx := l.dx[lo : lo+l.S]
				for s, v := range dy[lo : lo+l.S] {
					dx[s] = T(r * (gain*float64(v) - md - float64(l.xhat[lo+s])*mdx))
				}
			}
		}
	}
	return l.dx, nil
}

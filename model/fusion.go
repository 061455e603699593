package model

import (
	"fmt"

	"github.com/infonce/infonce/gemm"
)

// FusionMLP is the one kind of fusion head (Config.Fusion): a two-layer
// MLP over the concatenated image and instruction embeddings.
const FusionMLP = "mlp"

// Segment names of the fusion head, after the logit scale (and the logit
// bias) in the buffer.
const (
	FusionFC1Name = "fusion.fc1"
	FusionFC2Name = "fusion.fc2"
)

// fusionHidden is the hidden width h of the fusion head of c: FusionHidden,
// or 2·Dim when it is 0.
func (c Config) fusionHidden() int {
	if c.FusionHidden > 0 {
		return c.FusionHidden
	}
	return 2 * c.Dim
}

// checkFusion returns the errors of the fusion fields of c.
func (c Config) checkFusion() []error {
	var errs []error
	switch c.Fusion {
	case "":
		if c.FusionHidden != 0 {
			errs = append(errs, fmt.Errorf("model: Config.FusionHidden = %d without a fusion head (Config.Fusion is empty)", c.FusionHidden))
		}
		return errs
	case FusionMLP:
	default:
		return append(errs, fmt.Errorf("model: Config.Fusion = %q, want %q or empty", c.Fusion, FusionMLP))
	}
	if c.TextVocab <= 0 {
		errs = append(errs, fmt.Errorf("model: Config.Fusion = %q needs a text tower (Config.TextVocab > 0)", c.Fusion))
	}
	if c.FusionHidden < 0 {
		errs = append(errs, fmt.Errorf("model: Config.FusionHidden = %d, want >= 0 (0: 2·Dim)", c.FusionHidden))
	}
	return errs
}

// fusionParams is the number of parameters of the fusion head of c: W1
// (h×2d), b1 (h), W2 (d×h), b2 (d); 0 without one.
func (c Config) fusionParams(limit int) (int, bool) {
	if c.Fusion == "" {
		return 0, true
	}
	var n counter
	n.limit = limit
	d, h := c.Dim, c.fusionHidden()
	n.add(h, 2*d+1)
	n.add(d, h+1)
	return n.n, n.ok()
}

// declareFusion adds the fusion head's segments to l.
func declareFusion(c Config, l *layout) {
	if c.Fusion == "" {
		return
	}
	d, h := c.Dim, c.fusionHidden()
	l.linear(FusionFC1Name, 2*d, h)
	l.linear(FusionFC2Name, h, d)
}

// FusionHead fuses the embeddings of an image and of its instruction into
// one unit vector, the observation embedding of --objective vla:
//
//	f = L2Normalize(W2 · act(W1 · [u; v] + b1) + b2),
//
// with u, v the d-dimensional unit embeddings of the image and text towers,
// act the model's activation (Config.Activation), W1 h×2d and W2 d×h.
// Backward accumulates the gradients of W1, b1, W2, b2 into the head's
// gradient views and returns ∂L/∂u and ∂L/∂v.
type FusionHead[T gemm.Float] struct {
	D, Hidden int
	FC1, FC2  *Linear[T]
	Act       Layer[T]
	L2        *L2Normalize[T]

	x      []T // [u; v] row by row, kept for FC1's Backward
	du, dv []T
	b      int
}

// NumParams is the number of parameters of the head: the length of the
// contiguous run of its segments in the flat buffer.
func (f *FusionHead[T]) NumParams() int {
	return len(f.FC1.W) + len(f.FC1.B) + len(f.FC2.W) + len(f.FC2.B)
}

// newFusionHead wires a head of c over w, the head's parameters in buffer
// order (FC1 weight and bias, FC2 weight and bias), and g, their gradients
// in the same order (nil for a forward-only head).
func newFusionHead[T gemm.Float](c Config, w, g []T) *FusionHead[T] {
	d, h := c.Dim, c.fusionHidden()
	cut := func(s []T, at ...int) [][]T {
		if s == nil {
			return make([][]T, len(at))
		}
		out := make([][]T, len(at))
		off := 0
		for i, n := range at {
			out[i] = s[off : off+n : off+n]
			off += n
		}
		return out
	}
	sizes := []int{h * 2 * d, h, d * h, d}
	ws, gs := cut(w, sizes...), cut(g, sizes...)
	return &FusionHead[T]{
		D: d, Hidden: h,
		FC1: &Linear[T]{In: 2 * d, Out: h, W: ws[0], B: ws[1], DW: gs[0], DB: gs[1]},
		FC2: &Linear[T]{In: h, Out: d, W: ws[2], B: ws[3], DW: gs[2], DB: gs[3]},
		Act: newActivation[T](c.Activation, h),
		L2:  &L2Normalize[T]{N: d},
	}
}

// FusionWithGrad returns a head over the model's fusion parameters whose
// Backward accumulates into g (Fusion.NumParams values, in buffer order)
// instead of P.G, with activation caches of its own. An objective that
// backpropagates through the head while the step still clears P.G keeps
// the gradient in g and adds it to P.G[FusionOff:] later.
func (m *Model[T]) FusionWithGrad(g []T) (*FusionHead[T], error) {
	if m.Fusion == nil {
		return nil, fmt.Errorf("model: no fusion head (Config.Fusion is empty)")
	}
	n := m.Fusion.NumParams()
	if len(g) != n {
		return nil, fmt.Errorf("model: fusion head gradient of %d values, want %d", len(g), n)
	}
	return newFusionHead(m.Cfg, m.P.W[m.FusionOff:m.FusionOff+n], g), nil
}

// Forward returns the n×D fused embeddings of the image embeddings u and
// the instruction embeddings v (n×D each), a view valid until the next
// Forward.
func (f *FusionHead[T]) Forward(u, v []T, n int) ([]T, error) {
	d := f.D
	if len(u) != n*d || len(v) != n*d {
		return nil, fmt.Errorf("model: fusion head: %d and %d values for %d rows of %d", len(u), len(v), n, d)
	}
	f.x = grow(f.x, n*2*d)
	for i := range n {
		copy(f.x[i*2*d:i*2*d+d], u[i*d:(i+1)*d])
		copy(f.x[i*2*d+d:(i+1)*2*d], v[i*d:(i+1)*d])
	}
	h, err := f.FC1.Forward(f.x, n)
	if err != nil {
		return nil, fmt.Errorf("fusion head: %w", err)
	}
	if h, err = f.Act.Forward(h, n); err != nil {
		return nil, fmt.Errorf("fusion head: %w", err)
	}
	if h, err = f.FC2.Forward(h, n); err != nil {
		return nil, fmt.Errorf("fusion head: %w", err)
	}
	f.b = n
	return f.L2.Forward(h, n)
}

// Backward takes ∂L/∂f of the last Forward, accumulates the parameter
// gradients and returns ∂L/∂u and ∂L/∂v (views valid until the next
// Backward).
func (f *FusionHead[T]) Backward(df []T) (du, dv []T, err error) {
	g, err := f.L2.Backward(df)
	if err != nil {
		return nil, nil, fmt.Errorf("fusion head: %w", err)
	}
	if g, err = f.FC2.Backward(g); err != nil {
		return nil, nil, fmt.Errorf("fusion head: %w", err)
	}
	if g, err = f.Act.Backward(g); err != nil {
		return nil, nil, fmt.Errorf("fusion head: %w", err)
	}
	if g, err = f.FC1.Backward(g); err != nil {
		return nil, nil, fmt.Errorf("fusion head: %w", err)
	}
	d, n := f.D, f.b
	f.du, f.dv = grow(f.du, n*d), grow(f.dv, n*d)
	for i := range n {
		copy(f.du[i*d:(i+1)*d], g[i*2*d:i*2*d+d])
		copy(f.dv[i*d:(i+1)*d], g[i*2*d+d:(i+1)*2*d])
	}
	return f.du, f.dv, nil
}

package model

import (
	"fmt"

	"github.com/infonce/infonce/gemm"
)

// Segment names one parameter tensor inside the flat buffer: its values are
// W[Off : Off+Len] and its gradient G[Off : Off+Len].
type Segment struct {
	Name string `json:"name"`
	Off  int    `json:"offset"`
	Len  int    `json:"len"`
	// NoDecay marks tensors that weight decay must skip: biases, LayerNorm
	// gains and biases, and the logit scale. Weights and embeddings decay.
	NoDecay bool `json:"no_decay,omitempty"`
}

// Params is the flat parameter buffer W, the flat gradient buffer G (same
// length) and the table of segments that cut them into tensors. G is nil for
// a parameter-only copy, such as the key encoder of MoCo. A G made by New
// has room for GradTail more values after its end (G[:len(G)+GradTail]),
// so that a distributed step can sum values of its own over the ranks in
// the same all-reduce as the gradient.
type Params[T gemm.Float] struct {
	W, G     []T
	Segments []Segment
}

// GradTail is the room New leaves after the end of the gradient buffer.
const GradTail = 2

// ZeroGrad sets every gradient to zero (G ← 0); a no-op when G is nil.
func (p *Params[T]) ZeroGrad() { clear(p.G) }

// Lookup returns the segment with the given name.
func (p *Params[T]) Lookup(name string) (Segment, bool) {
	for _, s := range p.Segments {
		if s.Name == name {
			return s, true
		}
	}
	return Segment{}, false
}

// View returns the values and the gradient (nil without G) of segment s.
func (p *Params[T]) View(s Segment) (w, g []T) {
	w = p.W[s.Off : s.Off+s.Len : s.Off+s.Len]
	if p.G != nil {
		g = p.G[s.Off : s.Off+s.Len : s.Off+s.Len]
	}
	return w, g
}

// initKind says how a segment is initialised.
type initKind int

const (
	initUniform     initKind = iota // U(−1/√fanIn, 1/√fanIn): Linear weight and bias
	initNormal                      // N(0, 1): embeddings
	initOne                         // 1: LayerNorm gain
	initZero                        // 0: LayerNorm bias
	initLogit                       // t0: logit scale
	initLogitBias                   // b0: logit bias
	initSmallNormal                 // N(0, 0.02²): position embeddings and class tokens
)

type initSpec struct {
	kind  initKind
	fanIn int
}

// layout is the ordered table of segments of a configuration, with how each
// one is initialised.
type layout struct {
	segs  []Segment
	inits []initSpec
	n     int
}

func (l *layout) add(name string, n int, noDecay bool, in initSpec) {
	l.segs = append(l.segs, Segment{Name: name, Off: l.n, Len: n, NoDecay: noDecay})
	l.inits = append(l.inits, in)
	l.n += n
}

func (l *layout) linear(name string, in, out int) {
	l.add(name+".weight", out*in, false, initSpec{initUniform, in})
	l.add(name+".bias", out, true, initSpec{initUniform, in})
}

func (l *layout) layerNorm(name string, n int) {
	l.add(name+".gain", n, true, initSpec{kind: initOne})
	l.add(name+".bias", n, true, initSpec{kind: initZero})
}

// LogitBiasName is the segment name of the logit bias b of sigmoid
// losses (Config.LogitBias).
const LogitBiasName = "logit_bias"

// LogitScaleName is the segment name of the logit scale t.
const LogitScaleName = "logit_scale"

// layoutOf lists the segments of a valid configuration in buffer order:
// the image tower, the text tower (if any), the action tower (if any), the
// logit scale, the logit bias (if any), then the fusion head (if any).
func layoutOf(c Config) *layout {
	l := &layout{}
	for _, side := range c.sides() {
		c.kind(side).declare(c, l)
	}
	l.add(LogitScaleName, 1, true, initSpec{kind: initLogit})
	if c.LogitBias {
		l.add(LogitBiasName, 1, true, initSpec{kind: initLogitBias})
	}
	declareFusion(c, l)
	return l
}

// counter sums products of sizes, remembering an overflow past limit.
type counter struct {
	n, limit int
	over     bool
}

func (c *counter) add(a, b int) {
	if c.over || (a > 0 && b > c.limit/a) {
		c.over = true
		return
	}
	c.n += a * b
	c.over = c.n > c.limit
}

func (c *counter) ok() bool { return !c.over }

// cursor hands out the views of a layout's segments in order.
type cursor[T gemm.Float] struct {
	p *Params[T]
	i int
}

func (c *cursor[T]) next(name string) (w, g []T) {
	s := c.p.Segments[c.i]
	if s.Name != name {
		panic(fmt.Sprintf("model: layout out of order: segment %d is %q, want %q", c.i, s.Name, name))
	}
	c.i++
	return c.p.View(s)
}

// linear hands out the weight and bias of the Linear layer name.
func (c *cursor[T]) linear(name string, in, out int) *Linear[T] {
	w, dw := c.next(name + ".weight")
	b, db := c.next(name + ".bias")
	return &Linear[T]{In: in, Out: out, W: w, B: b, DW: dw, DB: db}
}

// layerNorm hands out the gain and bias of the LayerNorm name.
func (c *cursor[T]) layerNorm(name string, n int) *LayerNorm[T] {
	g, dg := c.next(name + ".gain")
	b, db := c.next(name + ".bias")
	return &LayerNorm[T]{N: n, Gain: g, Bias: b, DGain: dg, DBias: db}
}

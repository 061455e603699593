package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/infonce/infonce/gemm"
)

// Model is the towers, the logit scale (and bias) and an optional fusion
// head over one flat parameter buffer P.W and one flat gradient buffer P.G.
type Model[T gemm.Float] struct {
	Cfg   Config
	P     *Params[T]
	Image Tower[T]
	Text  Tower[T] // nil when Cfg.TextVocab == 0
	// Action encodes chunks of actions; nil when Cfg.ActionIn == 0.
	Action Tower[T]
	// LogitScale is the index of t in P.W and P.G; the logit scale is
	// s = exp(t). It is always present and never decayed.
	LogitScale int
	// LogitBias is the index of the logit bias b after it (SigLIP's), or
	// −1 without Config.LogitBias.
	LogitBias int
	// Fusion is the fusion head of Config.Fusion, after the logit scale
	// and bias, its parameters one run from FusionOff; nil (FusionOff −1)
	// without one.
	Fusion    *FusionHead[T]
	FusionOff int
}

// pcgStream is the second word of the PCG state of the initialisation, so
// that the model's random stream differs from other streams of the same seed.
const pcgStream = 0x6d6f64656c5f696e // "model_in"

// New builds a model for cfg with fresh parameter and gradient buffers,
// initialised like PyTorch's defaults from a PCG generator seeded with seed:
// Linear weights and biases U(−1/√fan_in, 1/√fan_in), embeddings N(0, 1),
// LayerNorm gains 1 and biases 0, and t = cfg.InitLogitScale. The same seed
// gives the same bytes.
func New[T gemm.Float](cfg Config, seed uint64) (*Model[T], error) {
	return NewWithGrad[T](cfg, seed, nil)
}

// NewWithGrad is New with the gradient buffer in g, which must hold
// NumGrad(cfg) elements: P.G is g[:NumGrad(cfg)-GradTail], and the room
// after it is g's. The caller chooses the memory, such as storage that
// other processes can read (shm.SharedVector). g is cleared; nil
// allocates as New does.
func NewWithGrad[T gemm.Float](cfg Config, seed uint64, g []T) (*Model[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.clone()
	l := layoutOf(cfg)
	if g == nil {
		g = make([]T, l.n+GradTail)
	}
	if len(g) != l.n+GradTail {
		return nil, fmt.Errorf("model: gradient buffer of %d elements, want %d for this Config", len(g), l.n+GradTail)
	}
	clear(g)
	p := &Params[T]{W: make([]T, l.n), G: g[: l.n : l.n+GradTail], Segments: l.segs}
	rng := rand.New(rand.NewPCG(seed, pcgStream))
	for i, s := range l.segs {
		w, _ := p.View(s)
		in := l.inits[i]
		switch in.kind {
		case initUniform:
			bound := 1 / math.Sqrt(float64(in.fanIn))
			for j := range w {
				w[j] = T((2*rng.Float64() - 1) * bound)
			}
		case initNormal:
			for j := range w {
				w[j] = T(rng.NormFloat64())
			}
		case initOne:
			for j := range w {
				w[j] = 1
			}
		case initZero:
			clear(w)
		case initLogit:
			w[0] = T(cfg.InitLogitScale)
		case initLogitBias:
			w[0] = T(cfg.InitLogitBias)
		case initSmallNormal:
			for j := range w {
				w[j] = T(0.02 * rng.NormFloat64())
			}
		}
	}
	return assemble(cfg, p), nil
}

// NumGrad is the length of the gradient buffer NewWithGrad takes for cfg:
// the number of parameters, plus GradTail.
func NumGrad(cfg Config) (int, error) {
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	return cfg.NumParams() + GradTail, nil
}

// NewWithParams builds a model for cfg over the existing parameter buffer w
// (shared, not copied), with the layout New would give and no gradient
// buffer: Backward then fails. It serves the key encoder of MoCo and
// evaluation copies whose activation caches must stay apart from the
// training model's.
func NewWithParams[T gemm.Float](cfg Config, w []T) (*Model[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.clone()
	l := layoutOf(cfg)
	if len(w) != l.n {
		return nil, fmt.Errorf("model: parameter buffer has %d elements, want %d for this Config", len(w), l.n)
	}
	return assemble(cfg, &Params[T]{W: w, Segments: l.segs}), nil
}

// assemble wires the towers of cfg to their views into p.
func assemble[T gemm.Float](cfg Config, p *Params[T]) *Model[T] {
	c := &cursor[T]{p: p}
	m := &Model[T]{Cfg: cfg, P: p}
	m.Image = build(cfg.kind(ModalityImage), cfg, c)
	if cfg.TextVocab > 0 {
		m.Text = build(cfg.kind(ModalityText), cfg, c)
	}
	if cfg.ActionIn > 0 {
		m.Action = build(cfg.kind(ModalityAction), cfg, c)
	}
	c.next(LogitScaleName)
	m.LogitScale = p.Segments[c.i-1].Off
	m.LogitBias = -1
	if cfg.LogitBias {
		c.next(LogitBiasName)
		m.LogitBias = p.Segments[c.i-1].Off
	}
	m.FusionOff = -1
	if cfg.Fusion != "" {
		// The head's four segments are one run of the buffer.
		off, n := p.Segments[c.i].Off, 0
		for _, name := range []string{FusionFC1Name + ".weight", FusionFC1Name + ".bias", FusionFC2Name + ".weight", FusionFC2Name + ".bias"} {
			w, _ := c.next(name)
			n += len(w)
		}
		var g []T
		if p.G != nil {
			g = p.G[off : off+n : off+n]
		}
		m.Fusion, m.FusionOff = newFusionHead(cfg, p.W[off:off+n:off+n], g), off
	}
	if c.i != len(p.Segments) {
		panic(fmt.Sprintf("model: layout has %d segments, wired %d", len(p.Segments), c.i))
	}
	return m
}

// Scale returns the logit scale s = exp(t).
func (m *Model[T]) Scale() T { return T(math.Exp(float64(m.P.W[m.LogitScale]))) }

// SetGradReady makes both towers' Backward call ready with each parameter
// gradient the moment it is final (nil stops the calls). The buffer is
// laid out image tower, text tower, logit scale, and each tower hands its
// gradients over in decreasing buffer order, so that a backward pass that
// runs the text tower before the image tower hands over one run of
// adjacent slices from the top of P.G down to 0 (the logit scale's, which
// no tower computes, excepted): what a bucketed all-reduce overlapped with
// the backward pass needs.
func (m *Model[T]) SetGradReady(ready func(g []T)) {
	m.Image.SetGradReady(ready)
	if m.Text != nil {
		m.Text.SetGradReady(ready)
	}
	if m.Action != nil {
		m.Action.SetGradReady(ready)
	}
}

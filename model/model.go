package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/infonce/infonce/gemm"
)

// Model is the pair of towers and the logit scale over one flat parameter
// buffer P.W and one flat gradient buffer P.G.
type Model[T gemm.Float] struct {
	Cfg   Config
	P     *Params[T]
	Image *ImageTower[T]
	Text  *TextTower[T] // nil when Cfg.TextVocab == 0
	// LogitScale is the index of t in P.W and P.G; the logit scale is
	// s = exp(t). It is always present and never decayed.
	LogitScale int
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
// other processes can read (allreduce.SharedVector). g is cleared; nil
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

// assemble wires the layers of cfg to their views into p.
func assemble[T gemm.Float](cfg Config, p *Params[T]) *Model[T] {
	c := &cursor[T]{p: p}
	linear := func(name string, in, out int) *Linear[T] {
		w, dw := c.next(name + ".weight")
		b, db := c.next(name + ".bias")
		return &Linear[T]{In: in, Out: out, W: w, B: b, DW: dw, DB: db}
	}
	layerNorm := func(name string, n int) *LayerNorm[T] {
		g, dg := c.next(name + ".gain")
		b, db := c.next(name + ".bias")
		return &LayerNorm[T]{N: n, Gain: g, Bias: b, DGain: dg, DBias: db}
	}
	m := &Model[T]{Cfg: cfg, P: p}
	img := &ImageTower[T]{L2: &L2Normalize[T]{N: cfg.Dim}}
	if cfg.LayerNorm {
		img.LayerNorms = make([]*LayerNorm[T], len(cfg.ImageHidden))
	}
	in := cfg.ImageIn
	for i, h := range cfg.ImageHidden {
		img.Linears = append(img.Linears, linear(fmt.Sprintf("image.fc%d", i), in, h))
		if cfg.LayerNorm {
			img.LayerNorms[i] = layerNorm(fmt.Sprintf("image.ln%d", i), h)
		}
		img.Acts = append(img.Acts, newActivation[T](cfg.Activation, h))
		in = h
	}
	img.Linears = append(img.Linears, linear("image.proj", in, cfg.Dim))
	img.Linears[0].NoInputGrad = true // the input is data
	m.Image = img
	if cfg.TextVocab > 0 {
		e, de := c.next("text.embed.weight")
		txt := &TextTower[T]{
			Embed: &EmbeddingBag[T]{Vocab: cfg.TextVocab, Dim: cfg.TextHidden, E: e, DE: de},
			Act:   newActivation[T](cfg.Activation, cfg.TextHidden),
			L2:    &L2Normalize[T]{N: cfg.Dim},
		}
		if cfg.LayerNorm {
			txt.LayerNorm = layerNorm("text.ln", cfg.TextHidden)
		}
		txt.Proj = linear("text.proj", cfg.TextHidden, cfg.Dim)
		m.Text = txt
	}
	c.next(LogitScaleName)
	m.LogitScale = p.Segments[c.i-1].Off
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
	m.Image.Ready = ready
	if m.Text != nil {
		m.Text.Ready = ready
	}
}

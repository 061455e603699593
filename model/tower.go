package model

import (
	"errors"
	"fmt"

	"github.com/infonce/infonce/gemm"
)

func newActivation[T gemm.Float](name string, n int) Layer[T] {
	if name == ActGELU {
		return &GELU[T]{N: n}
	}
	return &ReLU[T]{N: n}
}

// ImageTower is the image encoder
//
//	h_0 = x,  h_l = act(LN_l(h_{l−1} W_lᵀ + b_l))  (LN_l only with Config.LayerNorm),
//	u = L2Normalize(h_L W_projᵀ + b_proj),
//
// mapping b×ImageIn inputs to b×Dim unit-norm embeddings.
type ImageTower[T gemm.Float] struct {
	// Linears are the hidden layers followed by the projection to Dim.
	Linears []*Linear[T]
	// LayerNorms has one entry per hidden layer, or is nil without LayerNorm.
	LayerNorms []*LayerNorm[T]
	// Acts are the hidden activations, one per hidden layer.
	Acts []Layer[T]
	L2   *L2Normalize[T]
	// Ready, when set, is called by Backward with each parameter gradient
	// the moment it is final, in decreasing buffer order (see
	// Model.SetGradReady).
	Ready func(g []T)

	features []T
	ready    bool
}

// Forward encodes the in.N rows of in.X (N×ImageIn) and returns the N×Dim
// L2-normalised embeddings, a view valid until the next Forward. The first
// layer keeps a reference to in.X for Backward: it must not change in
// between.
func (t *ImageTower[T]) Forward(in Batch[T]) ([]T, error) {
	t.ready = false // a failed Forward leaves nothing to run Backward on
	h, b := in.X, in.N
	var err error
	last := len(t.Linears) - 1
	for i, lin := range t.Linears[:last] {
		if h, err = lin.Forward(h, b); err != nil {
			return nil, fmt.Errorf("image tower: layer %d: %w", i, err)
		}
		if t.LayerNorms != nil {
			if h, err = t.LayerNorms[i].Forward(h, b); err != nil {
				return nil, fmt.Errorf("image tower: layer %d: %w", i, err)
			}
		}
		if h, err = t.Acts[i].Forward(h, b); err != nil {
			return nil, fmt.Errorf("image tower: layer %d: %w", i, err)
		}
	}
	t.features = h
	if h, err = t.Linears[last].Forward(h, b); err != nil {
		return nil, fmt.Errorf("image tower: projection: %w", err)
	}
	if h, err = t.L2.Forward(h, b); err != nil {
		return nil, fmt.Errorf("image tower: %w", err)
	}
	t.ready = true
	return h, nil
}

// Features returns h_L, the b×ImageHidden[last] activations of the last
// hidden layer in the last Forward: the representation for linear probes.
// It is a view valid until the next Forward.
func (t *ImageTower[T]) Features() []T { return t.features }

// Backward takes dEmb = ∂L/∂u (b×Dim) of the last Forward and accumulates
// the gradients of every parameter of the tower into P.G. It fails when the
// model has no gradient buffer.
func (t *ImageTower[T]) Backward(dEmb []T) error {
	if !t.ready {
		return fmt.Errorf("image tower: %w", errNoForward)
	}
	g, err := t.L2.Backward(dEmb)
	if err != nil {
		return fmt.Errorf("image tower: %w", err)
	}
	last := len(t.Linears) - 1
	if g, err = t.Linears[last].Backward(g); err != nil {
		return fmt.Errorf("image tower: projection: %w", err)
	}
	notify(t.Ready, t.Linears[last].DB, t.Linears[last].DW)
	for i := last - 1; i >= 0; i-- {
		if g, err = t.Acts[i].Backward(g); err != nil {
			return fmt.Errorf("image tower: layer %d: %w", i, err)
		}
		if t.LayerNorms != nil {
			if g, err = t.LayerNorms[i].Backward(g); err != nil {
				return fmt.Errorf("image tower: layer %d: %w", i, err)
			}
			notify(t.Ready, t.LayerNorms[i].DBias, t.LayerNorms[i].DGain)
		}
		if g, err = t.Linears[i].Backward(g); err != nil {
			return fmt.Errorf("image tower: layer %d: %w", i, err)
		}
		notify(t.Ready, t.Linears[i].DB, t.Linears[i].DW)
	}
	return nil
}

// notify hands the final gradients gs, in order, to ready (if set).
func notify[T gemm.Float](ready func([]T), gs ...[]T) {
	if ready == nil {
		return
	}
	for _, g := range gs {
		ready(g)
	}
}

// TextTower is the text encoder
//
//	h = act(LN(EmbeddingBag(ids)))  (LN only with Config.LayerNorm),
//	v = L2Normalize(h W_projᵀ + b_proj),
//
// mapping b bags of token ids to b×Dim unit-norm embeddings.
type TextTower[T gemm.Float] struct {
	Embed     *EmbeddingBag[T]
	LayerNorm *LayerNorm[T] // nil without LayerNorm
	Act       Layer[T]
	Proj      *Linear[T]
	L2        *L2Normalize[T]
	// Ready is ImageTower.Ready's counterpart.
	Ready func(g []T)

	features []T
	ready    bool
}

// Forward encodes in.N bags, bag i being IDs[Offsets[i]:Offsets[i+1]] (the
// last bag runs to len(IDs)), and returns the N×Dim L2-normalised
// embeddings, a view valid until the next Forward. An id outside
// [0, TextVocab) is an error.
func (t *TextTower[T]) Forward(in Batch[T]) ([]T, error) {
	t.ready = false // a failed Forward leaves nothing to run Backward on
	b := in.N
	h, err := t.Embed.Forward(in.IDs, in.Offsets, b)
	if err != nil {
		return nil, fmt.Errorf("text tower: %w", err)
	}
	if t.LayerNorm != nil {
		if h, err = t.LayerNorm.Forward(h, b); err != nil {
			return nil, fmt.Errorf("text tower: %w", err)
		}
	}
	if h, err = t.Act.Forward(h, b); err != nil {
		return nil, fmt.Errorf("text tower: %w", err)
	}
	t.features = h
	if h, err = t.Proj.Forward(h, b); err != nil {
		return nil, fmt.Errorf("text tower: projection: %w", err)
	}
	if h, err = t.L2.Forward(h, b); err != nil {
		return nil, fmt.Errorf("text tower: %w", err)
	}
	t.ready = true
	return h, nil
}

// Features returns h, the b×TextHidden hidden activations of the last
// Forward (a view valid until the next Forward).
func (t *TextTower[T]) Features() []T { return t.features }

// Backward takes dEmb = ∂L/∂v (b×Dim) of the last Forward and accumulates the
// gradients of every parameter of the tower into P.G. It fails when the model
// has no gradient buffer.
func (t *TextTower[T]) Backward(dEmb []T) error {
	if !t.ready {
		return fmt.Errorf("text tower: %w", errNoForward)
	}
	g, err := t.L2.Backward(dEmb)
	if err != nil {
		return fmt.Errorf("text tower: %w", err)
	}
	if g, err = t.Proj.Backward(g); err != nil {
		return fmt.Errorf("text tower: projection: %w", err)
	}
	notify(t.Ready, t.Proj.DB, t.Proj.DW)
	if g, err = t.Act.Backward(g); err != nil {
		return fmt.Errorf("text tower: %w", err)
	}
	if t.LayerNorm != nil {
		if g, err = t.LayerNorm.Backward(g); err != nil {
			return fmt.Errorf("text tower: %w", err)
		}
		notify(t.Ready, t.LayerNorm.DBias, t.LayerNorm.DGain)
	}
	if err = t.Embed.Backward(g); err != nil {
		return fmt.Errorf("text tower: %w", err)
	}
	notify(t.Ready, t.Embed.DE)
	return nil
}

// Tower kinds of this file.
const (
	TowerMLP        = "mlp" // ImageTower
	TowerBagOfWords = "bow" // TextTower
)

// Kind is TowerMLP.
func (t *ImageTower[T]) Kind() string { return TowerMLP }

// SetGradReady sets Ready.
func (t *ImageTower[T]) SetGradReady(ready func(g []T)) { t.Ready = ready }

// Kind is TowerBagOfWords.
func (t *TextTower[T]) Kind() string { return TowerBagOfWords }

// SetGradReady sets Ready.
func (t *TextTower[T]) SetGradReady(ready func(g []T)) { t.Ready = ready }

func init() {
	registerTower(TowerMLP, towerKind{
		modality: ModalityImage,
		check:    checkMLP,
		count:    countMLP,
		declare:  declareMLP,
		build32:  func(c Config, cur *cursor[float32]) Tower[float32] { return newImageTower(c, cur) },
		build64:  func(c Config, cur *cursor[float64]) Tower[float64] { return newImageTower(c, cur) },
	})
	registerTower(TowerBagOfWords, towerKind{
		modality: ModalityText,
		check:    checkBagOfWords,
		count:    countBagOfWords,
		declare:  declareBagOfWords,
		build32:  func(c Config, cur *cursor[float32]) Tower[float32] { return newTextTower(c, cur) },
		build64:  func(c Config, cur *cursor[float64]) Tower[float64] { return newTextTower(c, cur) },
	})
}

func checkMLP(c Config) []error {
	var errs []error
	if c.ImageIn <= 0 {
		errs = append(errs, fmt.Errorf("model: Config.ImageIn = %d, want > 0", c.ImageIn))
	}
	if len(c.ImageHidden) == 0 {
		errs = append(errs, errors.New("model: Config.ImageHidden is empty, want at least one hidden width (e.g. {512, 256})"))
	}
	for i, h := range c.ImageHidden {
		if h <= 0 {
			errs = append(errs, fmt.Errorf("model: Config.ImageHidden[%d] = %d, want > 0", i, h))
		}
	}
	return errs
}

func countMLP(c Config, limit int) (int, bool) { return countMLPOf(c, limit, c.ImageIn, c.ImageHidden) }

func countMLPOf(c Config, limit, in int, hidden []int) (int, bool) {
	var n counter
	n.limit = limit
	for _, h := range hidden {
		n.add(h, in+1)
		if c.LayerNorm {
			n.add(2, h)
		}
		in = h
	}
	n.add(c.Dim, in+1)
	return n.n, n.ok()
}

// declareMLP lists the MLP's segments: per hidden layer i, image.fc<i>
// (and image.ln<i> with LayerNorm), then image.proj.
func declareMLP(c Config, l *layout) { declareMLPOf(c, l, ModalityImage, c.ImageIn, c.ImageHidden) }

func declareMLPOf(c Config, l *layout, prefix string, in int, hidden []int) {
	for i, h := range hidden {
		l.linear(fmt.Sprintf("%s.fc%d", prefix, i), in, h)
		if c.LayerNorm {
			l.layerNorm(fmt.Sprintf("%s.ln%d", prefix, i), h)
		}
		in = h
	}
	l.linear(prefix+".proj", in, c.Dim)
}

func newImageTower[T gemm.Float](cfg Config, c *cursor[T]) *ImageTower[T] {
	return newMLP(cfg, c, ModalityImage, cfg.ImageIn, cfg.ImageHidden)
}

// newMLP wires an MLP tower of the given modality (its segment prefix)
// over in inputs and the hidden widths.
func newMLP[T gemm.Float](cfg Config, c *cursor[T], prefix string, in int, hidden []int) *ImageTower[T] {
	img := &ImageTower[T]{L2: &L2Normalize[T]{N: cfg.Dim}}
	if cfg.LayerNorm {
		img.LayerNorms = make([]*LayerNorm[T], len(hidden))
	}
	for i, h := range hidden {
		img.Linears = append(img.Linears, c.linear(fmt.Sprintf("%s.fc%d", prefix, i), in, h))
		if cfg.LayerNorm {
			img.LayerNorms[i] = c.layerNorm(fmt.Sprintf("%s.ln%d", prefix, i), h)
		}
		img.Acts = append(img.Acts, newActivation[T](cfg.Activation, h))
		in = h
	}
	img.Linears = append(img.Linears, c.linear(prefix+".proj", in, cfg.Dim))
	img.Linears[0].NoInputGrad = true // the input is data
	return img
}

func checkBagOfWords(c Config) []error {
	if c.TextHidden <= 0 {
		return []error{fmt.Errorf("model: Config.TextHidden = %d, want > 0 when TextVocab > 0", c.TextHidden)}
	}
	return nil
}

func countBagOfWords(c Config, limit int) (int, bool) {
	var n counter
	n.limit = limit
	n.add(c.TextVocab, c.TextHidden)
	n.add(c.Dim, c.TextHidden+1)
	if c.LayerNorm {
		n.add(2, c.TextHidden)
	}
	return n.n, n.ok()
}

// declareBagOfWords lists text.embed.weight, text.ln (with LayerNorm) and
// text.proj.
func declareBagOfWords(c Config, l *layout) {
	l.add("text.embed.weight", c.TextVocab*c.TextHidden, false, initSpec{kind: initNormal})
	if c.LayerNorm {
		l.layerNorm("text.ln", c.TextHidden)
	}
	l.linear("text.proj", c.TextHidden, c.Dim)
}

func newTextTower[T gemm.Float](cfg Config, c *cursor[T]) *TextTower[T] {
	e, de := c.next("text.embed.weight")
	txt := &TextTower[T]{
		Embed: &EmbeddingBag[T]{Vocab: cfg.TextVocab, Dim: cfg.TextHidden, E: e, DE: de},
		Act:   newActivation[T](cfg.Activation, cfg.TextHidden),
		L2:    &L2Normalize[T]{N: cfg.Dim},
	}
	if cfg.LayerNorm {
		txt.LayerNorm = c.layerNorm("text.ln", cfg.TextHidden)
	}
	txt.Proj = c.linear("text.proj", cfg.TextHidden, cfg.Dim)
	return txt
}

package model

import (
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

// Forward encodes the b rows of x (b×ImageIn) and returns the b×Dim
// L2-normalised embeddings, a view valid until the next Forward. The first
// layer keeps a reference to x for Backward: x must not change in between.
func (t *ImageTower[T]) Forward(x []T, b int) ([]T, error) {
	t.ready = false // a failed Forward leaves nothing to run Backward on
	h := x
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

// Forward encodes b bags, bag i being ids[offsets[i]:offsets[i+1]] (the last
// bag runs to len(ids)), and returns the b×Dim L2-normalised embeddings, a
// view valid until the next Forward. An id outside [0, TextVocab) is an error.
func (t *TextTower[T]) Forward(ids, offsets []int32, b int) ([]T, error) {
	t.ready = false // a failed Forward leaves nothing to run Backward on
	h, err := t.Embed.Forward(ids, offsets, b)
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

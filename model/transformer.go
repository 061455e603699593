package model

import (
	"cmp"
	"fmt"

	"github.com/infonce/infonce/gemm"
)

// TowerTransformer is the kind name of the causal text transformer tower.
const TowerTransformer = "transformer"

// TransformerConfig shapes a "transformer" text tower.
type TransformerConfig struct {
	Context int `json:"context"` // L, the longest row of token ids
	Width   int `json:"width"`   // D
	Depth   int `json:"depth"`   // the number of transformer blocks
	Heads   int `json:"heads"`   // attention heads per block
	MLP     int `json:"mlp"`     // hidden width of the blocks' MLP; 0 means 4D
	// Pool is "eot" (the last token of each row, the default) or "mean"
	// (the mean of the row's tokens).
	Pool string `json:"pool"`
}

// Transformer is CLIP's text tower (Radford et al. 2021): a causal
// transformer over rows of at most L token ids,
//
//	h_t = E_tok[id_t] + E_pos[t]                       t < L
//	h = Block_k(h), k = 1…Depth                        pre-LN, causal
//	f = LN(h)_{n−1}  (Pool "eot"),  or mean_{t<n} LN(h)_t  (Pool "mean")
//	v = L2Normalize(f W_projᵀ + b_proj),
//
// for a row of n ids. A row shorter than L is padded with id 0; under the
// causal mask the padding never reaches the first n positions, so it
// changes nothing. Rows framed by package dataset/bpe (SOT, the text, EOT,
// without the padding) are pooled at their end-of-text token. Its segments
// are text.token_embedding, text.positional_embedding, text.blocks.k (see
// newBlock), text.ln_final and text.proj.
type Transformer[T gemm.Float] struct {
	L     int
	embed *TokenEmbedding[T]
	units []unit[T] // the position embedding, the blocks, the final LayerNorm
	eot   *PoolAt[T]
	mean  *MeanPool[T]
	proj  *Linear[T]
	projG []T
	embG  []T
	l2    *L2Normalize[T]
	grads *gradArena[T] // the ∂L/∂x buffers of Backward
	Ready func(g []T)

	ids, at  []int32
	features []T
	ready    bool
}

func (c Config) textPool() string { return cmp.Or(c.Transformer.Pool, "eot") }

func checkTransformer(c Config) []error {
	v := c.Transformer
	errs := checkTransformerShape("Transformer", v.Width, v.Depth, v.Heads, v.MLP)
	if v.Context <= 0 || v.Context > 1<<16 {
		errs = append(errs, fmt.Errorf("model: Config.Transformer.Context = %d, want in [1, 65536]", v.Context))
	}
	if p := c.textPool(); p != "eot" && p != "mean" {
		errs = append(errs, fmt.Errorf("model: Config.Transformer.Pool = %q, want \"eot\" or \"mean\"", p))
	}
	return errs
}

func countTransformer(c Config, limit int) (int, bool) {
	v := c.Transformer
	d, f := v.Width, mlpWidth(v.MLP, v.Width)
	n := counter{limit: limit}
	n.add(c.TextVocab, d)
	n.add(v.Context, d)
	for range v.Depth {
		countBlock(&n, d, f)
	}
	n.add(2, d)
	n.add(c.Dim, d+1)
	return n.n, n.ok()
}

func declareTransformer(c Config, l *layout) {
	v := c.Transformer
	d, f := v.Width, mlpWidth(v.MLP, v.Width)
	l.add("text.token_embedding", c.TextVocab*d, false, initSpec{kind: initSmallNormal})
	l.add("text.positional_embedding", v.Context*d, false, initSpec{kind: initSmallNormal})
	for k := range v.Depth {
		declareBlock(l, fmt.Sprintf("text.blocks.%d", k), d, f)
	}
	l.layerNorm("text.ln_final", d)
	l.linear("text.proj", d, c.Dim)
}

func newTransformer[T gemm.Float](c Config, cur *cursor[T]) *Transformer[T] {
	v := c.Transformer
	d, f, L := v.Width, mlpWidth(v.MLP, v.Width), v.Context
	t := &Transformer[T]{L: L, l2: &L2Normalize[T]{N: c.Dim}}
	from := cur.i
	e, de := cur.next("text.token_embedding")
	t.embed = &TokenEmbedding[T]{Vocab: c.TextVocab, D: d, L: L, E: e, DE: de}
	t.embG = cur.gradSpan(from)
	from = cur.i
	p, dp := cur.next("text.positional_embedding")
	t.units = append(t.units, unit[T]{&PositionEmbedding[T]{L: L, D: d, E: p, DE: dp}, cur.gradSpan(from)})
	for k := range v.Depth {
		from = cur.i
		blk := newBlock(cur, fmt.Sprintf("text.blocks.%d", k), L, d, v.Heads, f, true)
		t.units = append(t.units, unit[T]{blk, cur.gradSpan(from)})
	}
	from = cur.i
	ln := cur.towerLayerNorm("text.ln_final", d)
	t.units = append(t.units, unit[T]{PerToken[T]{L: L, F: ln}, cur.gradSpan(from)})
	if c.textPool() == "eot" {
		t.eot = &PoolAt[T]{L: L, D: d}
	} else {
		t.mean = &MeanPool[T]{L: L, D: d}
	}
	from = cur.i
	t.proj = cur.linear("text.proj", d, c.Dim)
	t.projG = cur.gradSpan(from)
	pool := arenaUser[T](t.mean)
	if t.eot != nil {
		pool = t.eot
	}
	t.grads = towerArena(t.units, pool, t.proj)
	return t
}

// Kind implements Tower.
func (t *Transformer[T]) Kind() string { return TowerTransformer }

// SetGradReady implements Tower.
func (t *Transformer[T]) SetGradReady(ready func(g []T)) { t.Ready = ready }

// Features returns the pooled b × D tokens of the last Forward.
func (t *Transformer[T]) Features() []T { return t.features }

// Forward encodes the in.N rows of token ids of in (row i is
// IDs[Offsets[i]:Offsets[i+1]], 1 to L ids) into N×Dim unit-norm
// embeddings.
func (t *Transformer[T]) Forward(in Batch[T]) ([]T, error) {
	t.ready = false
	b := in.N
	if b < 0 || len(in.Offsets) != b {
		return nil, fmt.Errorf("transformer: %d offsets for %d rows", len(in.Offsets), b)
	}
	if b == 0 && len(in.IDs) != 0 {
		return nil, fmt.Errorf("transformer: %d ids but no rows", len(in.IDs))
	}
	t.ids = grow32(t.ids, b*t.L)
	t.at = grow32(t.at, b)
	clear(t.ids)
	for i := 0; i < b; i++ {
		lo, hi := int(in.Offsets[i]), len(in.IDs)
		if i+1 < b {
			hi = int(in.Offsets[i+1])
		}
		if lo < 0 || hi < lo || hi > len(in.IDs) || (i == 0 && lo != 0) {
			return nil, fmt.Errorf("transformer: row %d: offsets %d…%d out of order or out of [0, %d]", i, lo, hi, len(in.IDs))
		}
		if n := hi - lo; n < 1 || n > t.L {
			return nil, fmt.Errorf("transformer: row %d has %d ids, want 1 to the context length %d", i, n, t.L)
		}
		copy(t.ids[i*t.L:], in.IDs[lo:hi])
		t.at[i] = int32(hi - lo)
	}
	h, err := t.embed.Forward(t.ids, b)
	if err != nil {
		return nil, fmt.Errorf("transformer: %w", err)
	}
	if h, err = forwardUnits(t.units, h, b); err != nil {
		return nil, fmt.Errorf("transformer: %w", err)
	}
	if t.eot != nil {
		for i := range t.at {
			t.at[i]-- // the last token: n − 1
		}
		h, err = t.eot.Forward(h, t.at, b)
	} else {
		h, err = t.mean.ForwardPrefix(h, t.at, b)
	}
	if err != nil {
		return nil, fmt.Errorf("transformer: pool: %w", err)
	}
	t.features = h
	if h, err = t.proj.Forward(h, b); err != nil {
		return nil, fmt.Errorf("transformer: projection: %w", err)
	}
	if h, err = t.l2.Forward(h, b); err != nil {
		return nil, fmt.Errorf("transformer: %w", err)
	}
	t.ready = true
	return h, nil
}

// Backward accumulates the gradients of every parameter of the tower.
func (t *Transformer[T]) Backward(dEmb []T) error {
	if !t.ready {
		return fmt.Errorf("transformer: %w", errNoForward)
	}
	t.grads.reset()
	g, err := t.l2.Backward(dEmb)
	if err != nil {
		return fmt.Errorf("transformer: %w", err)
	}
	if g, err = t.proj.Backward(g); err != nil {
		return fmt.Errorf("transformer: projection: %w", err)
	}
	notify(t.Ready, t.projG)
	if t.eot != nil {
		g, err = t.eot.Backward(g)
	} else {
		g, err = t.mean.Backward(g)
	}
	if err != nil {
		return fmt.Errorf("transformer: pool: %w", err)
	}
	if g, err = backwardUnits(t.units, g, t.Ready, t.grads); err != nil {
		return fmt.Errorf("transformer: %w", err)
	}
	if err = t.embed.Backward(g); err != nil {
		return fmt.Errorf("transformer: %w", err)
	}
	notify(t.Ready, t.embG)
	return nil
}

func init() {
	registerTower(TowerTransformer, towerKind{
		modality: ModalityText,
		// Every entry sees the Config with the kind's defaults filled in.
		check:   func(c Config) []error { return checkTransformer(c.encoderDefaults()) },
		count:   func(c Config, limit int) (int, bool) { return countTransformer(c.encoderDefaults(), limit) },
		declare: func(c Config, l *layout) { declareTransformer(c.encoderDefaults(), l) },
		build32: func(c Config, cur *cursor[float32]) Tower[float32] { return newTransformer(c.encoderDefaults(), cur) },
		build64: func(c Config, cur *cursor[float64]) Tower[float64] { return newTransformer(c.encoderDefaults(), cur) },
	})
}

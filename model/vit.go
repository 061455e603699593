package model

import (
	"cmp"
	"fmt"

	"github.com/infonce/infonce/gemm"
)

// TowerViT is the kind name of the vision transformer image tower.
const TowerViT = "vit"

// ViTConfig shapes a "vit" image tower.
type ViTConfig struct {
	Patch int `json:"patch"` // P: the image is cut into P×P patches
	Width int `json:"width"` // D, the width of the tokens
	Depth int `json:"depth"` // the number of transformer blocks
	Heads int `json:"heads"` // attention heads per block
	MLP   int `json:"mlp"`   // hidden width of the blocks' MLP; 0 means 4D
	// Pool is "cls" (a class token, the default) or "mean" (the mean of
	// the patch tokens).
	Pool string `json:"pool"`
}

// ViT is the vision transformer image tower (Dosovitskiy et al. 2021):
//
//	h = PatchEmbed(x)                                   N tokens of width D
//	h = [c; h] (Pool "cls"),  h = h + E_pos             N (+1) tokens
//	h = Block_k(h), k = 1…Depth                         pre-LN, non-causal
//	f = Pool(LN(h))                                     token 0, or the mean
//	u = L2Normalize(f W_projᵀ + b_proj)
//
// Its segments are image.patch_embed, image.cls_token (with "cls"),
// image.pos_embed, image.blocks.k (see newBlock), image.norm, image.proj.
type ViT[T gemm.Float] struct {
	units []unit[T] // patch embedding (+ class token) + positions, the blocks, the final LayerNorm
	cls   *PoolAt[T]
	mean  *MeanPool[T]
	proj  *Linear[T]
	projG []T
	l2    *L2Normalize[T]
	grads *gradArena[T] // the ∂L/∂x buffers of Backward
	at    []int32       // zeros: the class token of each row
	Ready func(g []T)

	features []T
	ready    bool
}

func (c Config) vitPool() string { return cmp.Or(c.ViT.Pool, "cls") }

func checkViT(c Config) []error {
	s, err := c.imageShape()
	if err != nil {
		return []error{err}
	}
	v := c.ViT
	errs := checkTransformerShape("ViT", v.Width, v.Depth, v.Heads, v.MLP)
	if v.Patch <= 0 || s.Height%v.Patch != 0 || s.Width%v.Patch != 0 {
		errs = append(errs, fmt.Errorf("model: Config.ViT.Patch = %d, want a divisor of the image's %d×%d", v.Patch, s.Height, s.Width))
	}
	if p := c.vitPool(); p != "cls" && p != "mean" {
		errs = append(errs, fmt.Errorf("model: Config.ViT.Pool = %q, want \"cls\" or \"mean\"", p))
	}
	return errs
}

// vitTokens is N, the number of patches, and the sequence length L.
func (c Config) vitTokens() (n, L int) {
	s, _ := c.imageShape()
	n = (s.Height / c.ViT.Patch) * (s.Width / c.ViT.Patch)
	if c.vitPool() == "cls" {
		return n, n + 1
	}
	return n, n
}

func countViT(c Config, limit int) (int, bool) {
	s, _ := c.imageShape()
	v := c.ViT
	d, f := v.Width, mlpWidth(v.MLP, v.Width)
	_, L := c.vitTokens()
	n := counter{limit: limit}
	n.add(d, s.Channels*v.Patch*v.Patch+1)
	n.add(L, d) // positions
	if c.vitPool() == "cls" {
		n.add(1, d)
	}
	for range v.Depth {
		countBlock(&n, d, f)
	}
	n.add(2, d)
	n.add(c.Dim, d+1)
	return n.n, n.ok()
}

func declareViT(c Config, l *layout) {
	s, _ := c.imageShape()
	v := c.ViT
	d, f := v.Width, mlpWidth(v.MLP, v.Width)
	_, L := c.vitTokens()
	l.linear("image.patch_embed", s.Channels*v.Patch*v.Patch, d)
	if c.vitPool() == "cls" {
		l.add("image.cls_token", d, false, initSpec{kind: initSmallNormal})
	}
	l.add("image.pos_embed", L*d, false, initSpec{kind: initSmallNormal})
	for k := range v.Depth {
		declareBlock(l, fmt.Sprintf("image.blocks.%d", k), d, f)
	}
	l.layerNorm("image.norm", d)
	l.linear("image.proj", d, c.Dim)
}

func newViT[T gemm.Float](c Config, cur *cursor[T]) *ViT[T] {
	s, _ := c.imageShape()
	v := c.ViT
	d, f := v.Width, mlpWidth(v.MLP, v.Width)
	n, L := c.vitTokens()
	t := &ViT[T]{l2: &L2Normalize[T]{N: c.Dim}}
	from := cur.i
	embed := Sequential[T]{&PatchEmbed[T]{C: s.Channels, H: s.Height, W: s.Width, P: v.Patch, NoInputGrad: true,
		Proj: *cur.linear("image.patch_embed", s.Channels*v.Patch*v.Patch, d)}}
	if c.vitPool() == "cls" {
		w, g := cur.next("image.cls_token")
		embed = append(embed, &ClassToken[T]{L: n, D: d, C: w, DC: g})
		t.cls = &PoolAt[T]{L: L, D: d}
	} else {
		t.mean = &MeanPool[T]{L: L, D: d}
	}
	w, g := cur.next("image.pos_embed")
	embed = append(embed, &PositionEmbedding[T]{L: L, D: d, E: w, DE: g})
	t.units = append(t.units, unit[T]{embed, cur.gradSpan(from)})
	for k := range v.Depth {
		from = cur.i
		blk := newBlock(cur, fmt.Sprintf("image.blocks.%d", k), L, d, v.Heads, f, false)
		t.units = append(t.units, unit[T]{blk, cur.gradSpan(from)})
	}
	from = cur.i
	t.units = append(t.units, unit[T]{PerToken[T]{L: L, F: cur.towerLayerNorm("image.norm", d)}, nil})
	t.units[len(t.units)-1].grad = cur.gradSpan(from)
	from = cur.i
	t.proj = cur.linear("image.proj", d, c.Dim)
	t.projG = cur.gradSpan(from)
	pool := arenaUser[T](t.mean)
	if t.cls != nil {
		pool = t.cls
	}
	t.grads = towerArena(t.units, pool, t.proj)
	return t
}

// Kind implements Tower.
func (t *ViT[T]) Kind() string { return TowerViT }

// SetGradReady implements Tower.
func (t *ViT[T]) SetGradReady(ready func(g []T)) { t.Ready = ready }

// Features returns the pooled b×D tokens of the last Forward.
func (t *ViT[T]) Features() []T { return t.features }

// Forward encodes the in.N images of in.X (N × C·H·W) into N×Dim unit-norm
// embeddings.
func (t *ViT[T]) Forward(in Batch[T]) ([]T, error) {
	t.ready = false
	b := in.N
	h, err := forwardUnits(t.units, in.X, b)
	if err != nil {
		return nil, fmt.Errorf("vit: %w", err)
	}
	if t.cls != nil {
		if cap(t.at) < b {
			t.at = make([]int32, b)
		}
		t.at = t.at[:b]
		h, err = t.cls.Forward(h, t.at, b)
	} else {
		h, err = t.mean.Forward(h, b)
	}
	if err != nil {
		return nil, fmt.Errorf("vit: pool: %w", err)
	}
	t.features = h
	if h, err = t.proj.Forward(h, b); err != nil {
		return nil, fmt.Errorf("vit: projection: %w", err)
	}
	if h, err = t.l2.Forward(h, b); err != nil {
		return nil, fmt.Errorf("vit: %w", err)
	}
	t.ready = true
	return h, nil
}

// Backward accumulates the gradients of every parameter of the tower.
func (t *ViT[T]) Backward(dEmb []T) error {
	if !t.ready {
		return fmt.Errorf("vit: %w", errNoForward)
	}
	t.grads.reset()
	g, err := t.l2.Backward(dEmb)
	if err != nil {
		return fmt.Errorf("vit: %w", err)
	}
	if g, err = t.proj.Backward(g); err != nil {
		return fmt.Errorf("vit: projection: %w", err)
	}
	notify(t.Ready, t.projG)
	if t.cls != nil {
		g, err = t.cls.Backward(g)
	} else {
		g, err = t.mean.Backward(g)
	}
	if err != nil {
		return fmt.Errorf("vit: pool: %w", err)
	}
	if _, err = backwardUnits(t.units, g, t.Ready, t.grads); err != nil {
		return fmt.Errorf("vit: %w", err)
	}
	return nil
}

func init() {
	registerTower(TowerViT, towerKind{
		modality: ModalityImage,
		// Every entry sees the Config with the kind's defaults filled in.
		check:   func(c Config) []error { return checkViT(c.encoderDefaults()) },
		count:   func(c Config, limit int) (int, bool) { return countViT(c.encoderDefaults(), limit) },
		declare: func(c Config, l *layout) { declareViT(c.encoderDefaults(), l) },
		build32: func(c Config, cur *cursor[float32]) Tower[float32] { return newViT(c.encoderDefaults(), cur) },
		build64: func(c Config, cur *cursor[float64]) Tower[float64] { return newViT(c.encoderDefaults(), cur) },
	})
}

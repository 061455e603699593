package model

import (
	"cmp"
	"fmt"
	"math"

	"github.com/infonce/infonce/gemm"
)

// ImageShape is the channels, height and width of an image, stored
// channel-major (NCHW) in ImageIn = C·H·W values.
type ImageShape struct {
	Channels int `json:"channels"`
	Height   int `json:"height"`
	Width    int `json:"width"`
}

// imageShape returns the C×H×W of c's images: c.ImageShape, or one channel
// of a square √ImageIn × √ImageIn when it is zero.
func (c Config) imageShape() (ImageShape, error) {
	s := c.ImageShape
	if s == (ImageShape{}) {
		side := int(math.Round(math.Sqrt(float64(c.ImageIn))))
		s = ImageShape{1, side, side}
	}
	if s.Channels <= 0 || s.Height <= 0 || s.Width <= 0 || s.Channels*s.Height*s.Width != c.ImageIn {
		return s, fmt.Errorf("model: Config.ImageShape %d×%d×%d does not hold Config.ImageIn = %d values (set it to C×H×W with C·H·W = ImageIn)",
			s.Channels, s.Height, s.Width, c.ImageIn)
	}
	return s, nil
}

// encoderDefaults fills in the zero fields of the shapes of the kinds c
// uses: a "vit" of width 64, depth 4, 4 heads and a class token, its patch
// the smallest P ≥ 4 dividing H and W that leaves at most 64 patches (1 if
// none does); a "cnn" of width 16, 3 stages of 1 block and min(8, width)
// groups; a "transformer" of context 32, width 64, depth 2, 4 heads,
// pooled at the last token; a "temporal" action tower of horizon 8, width
// 32 and kernel 3. The MLP width 0 stays (it means 4D). Fields of
// kinds c does not use stay zero, so a Config without these towers
// serialises as before.
func (c Config) encoderDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if c.kindName(ModalityImage) == TowerViT {
		v := &c.ViT
		def(&v.Width, 64)
		def(&v.Depth, 4)
		def(&v.Heads, 4)
		v.Pool = cmp.Or(v.Pool, "cls")
		if s, err := c.imageShape(); err == nil && v.Patch == 0 {
			v.Patch = 1
			for p := 4; p <= min(s.Height, s.Width); p++ {
				if s.Height%p == 0 && s.Width%p == 0 && (s.Height/p)*(s.Width/p) <= 64 {
					v.Patch = p
					break
				}
			}
		}
	}
	if c.kindName(ModalityImage) == TowerCNN {
		v := &c.CNN
		def(&v.Width, 16)
		def(&v.Stages, 3)
		def(&v.Blocks, 1)
		if v.Width > 0 {
			def(&v.Groups, min(8, v.Width))
		}
	}
	if c.ActionIn > 0 && c.kindName(ModalityAction) == TowerTemporal {
		c.ActionTemporal = c.ActionTemporal.temporalDefaults()
	}
	if c.TextVocab > 0 && c.kindName(ModalityText) == TowerTransformer {
		v := &c.Transformer
		def(&v.Context, 32)
		def(&v.Width, 64)
		def(&v.Depth, 2)
		def(&v.Heads, 4)
		v.Pool = cmp.Or(v.Pool, "eot")
	}
	return c
}

// mlpWidth is the hidden width of a transformer block's MLP: mlp, or 4D
// when mlp is 0.
func mlpWidth(mlp, d int) int {
	if mlp > 0 {
		return mlp
	}
	return 4 * d
}

// checkTransformerShape returns the errors of the width, depth, heads and
// MLP width of a transformer (ViT or text), naming the Config fields.
func checkTransformerShape(field string, d, depth, heads, mlp int) []error {
	var errs []error
	if d <= 0 || depth <= 0 || heads <= 0 || mlp < 0 {
		errs = append(errs, fmt.Errorf("model: Config.%s: width %d, depth %d, heads %d, mlp %d: want width, depth and heads > 0 and mlp >= 0", field, d, depth, heads, mlp))
	} else if d%heads != 0 {
		errs = append(errs, fmt.Errorf("model: Config.%s: %d heads do not divide the width %d", field, heads, d))
	}
	if d > 1<<20 || depth > 1<<10 || mlp > 1<<22 {
		errs = append(errs, fmt.Errorf("model: Config.%s: width %d, depth %d or mlp %d is out of range", field, d, depth, mlp))
	}
	return errs
}

// countBlock adds the parameters of one transformer block of width d and
// MLP width f.
func countBlock(n *counter, d, f int) {
	n.add(2, d)     // norm1
	n.add(3*d, d+1) // in_proj_weight, in_proj_bias
	n.add(d, d+1)   // out_proj
	n.add(2, d)     // norm2
	n.add(f, d+1)   // linear1
	n.add(d, f+1)   // linear2
}

// declareBlock lays out the parameters of the pre-LN transformer block
// name, with PyTorch's names of nn.TransformerEncoderLayer's parameters
// (LayerNorm weights are called gain here, as everywhere in the buffer).
func declareBlock(l *layout, name string, d, f int) {
	l.layerNorm(name+".norm1", d)
	l.add(name+".self_attn.in_proj_weight", 3*d*d, false, initSpec{initUniform, d})
	l.add(name+".self_attn.in_proj_bias", 3*d, true, initSpec{initUniform, d})
	l.linear(name+".self_attn.out_proj", d, d)
	l.layerNorm(name+".norm2", d)
	l.linear(name+".linear1", d, f)
	l.linear(name+".linear2", f, d)
}

// newBlock wires the pre-LN transformer block
//
//	x ← x + MHA(LN₁(x)),   x ← x + W₂ GELU(W₁ LN₂(x) + b₁) + b₂
//
// over L tokens of width d: PyTorch's nn.TransformerEncoderLayer(d, heads,
// f, dropout=0, activation="gelu", norm_first=True), with a causal mask for
// a text transformer.
func newBlock[T gemm.Float](c *cursor[T], name string, L, d, heads, f int, causal bool) Sequential[T] {
	ln1 := c.towerLayerNorm(name+".norm1", d)
	w, dw := c.next(name + ".self_attn.in_proj_weight")
	b, db := c.next(name + ".self_attn.in_proj_bias")
	attn := &MultiHeadAttention[T]{D: d, Heads: heads, L: L, Causal: causal,
		InProj: Linear[T]{In: d, Out: 3 * d, W: w, B: b, DW: dw, DB: db}}
	attn.OutProj = *c.linear(name+".self_attn.out_proj", d, d)
	ln2 := c.towerLayerNorm(name+".norm2", d)
	fc1 := c.linear(name+".linear1", d, f)
	fc2 := c.linear(name+".linear2", f, d)
	return Sequential[T]{
		&Residual[T]{F: Sequential[T]{PerToken[T]{L: L, F: ln1}, attn}},
		&Residual[T]{F: PerToken[T]{L: L, F: Sequential[T]{ln2, fc1, &GELU[T]{N: f, Fast32: true}, fc2}}},
	}
}

// towerLayerNorm hands out the gain and bias of the LayerNorm name of the
// vit and transformer towers, with its float32 path in float32
// (LayerNorm.Fast32).
func (c *cursor[T]) towerLayerNorm(name string, n int) *LayerNorm[T] {
	ln := c.layerNorm(name, n)
	ln.Fast32 = true
	return ln
}

// newTowerActivation is the activation of the cnn tower, which always
// follows a GroupNorm or a BasicBlock's sum, buffers nothing reads after:
// ReLU in place (ReLU.InPlace), or GELU with its float32 path in float32
// (GELU.Fast32), which keeps its input for Backward.
func newTowerActivation[T gemm.Float](name string, n int) Layer[T] {
	if name == ActGELU {
		return &GELU[T]{N: n, Fast32: true}
	}
	return &ReLU[T]{N: n, InPlace: true}
}

// gradSpan returns the gradient of segments [from, c.i) as one slice, the
// unit a tower hands to its Ready callback (nil without a gradient buffer).
func (c *cursor[T]) gradSpan(from int) []T {
	if c.p.G == nil || from == c.i {
		return nil
	}
	lo, last := c.p.Segments[from].Off, c.p.Segments[c.i-1]
	return c.p.G[lo : last.Off+last.Len : last.Off+last.Len]
}

// unit is a part of a tower whose parameters are adjacent in the buffer,
// with their gradient as one slice.
type unit[T gemm.Float] struct {
	Layer[T]
	grad []T
}

// backwardUnits runs units' Backward from the last to the first and hands
// each unit's gradient to ready once it is final: decreasing buffer order
// when the units are in buffer order.
// The gradient a unit consumed goes back to the arena a.
func backwardUnits[T gemm.Float](units []unit[T], g []T, ready func([]T), a *gradArena[T]) ([]T, error) {
	var err error
	for i := len(units) - 1; i >= 0; i-- {
		in := g
		if g, err = units[i].Backward(in); err != nil {
			return nil, err
		}
		a.give(in)
		if units[i].grad != nil {
			notify(ready, units[i].grad)
		}
	}
	return g, nil
}

// towerArena makes the gradient arena of a tower and hands it to the
// tower's units and to its other layers (nil ones are skipped).
func towerArena[T gemm.Float](units []unit[T], layers ...arenaUser[T]) *gradArena[T] {
	a := &gradArena[T]{}
	for _, u := range units {
		useArena(u.Layer, a)
	}
	for _, l := range layers {
		if l != nil {
			l.setArena(a)
		}
	}
	return a
}

// forwardUnits runs units' Forward in order.
func forwardUnits[T gemm.Float](units []unit[T], x []T, b int) ([]T, error) {
	var err error
	for _, u := range units {
		if x, err = u.Forward(x, b); err != nil {
			return nil, err
		}
	}
	return x, nil
}

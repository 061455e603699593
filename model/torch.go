package model

import (
	"fmt"
	"strings"
)

// TorchTensor is one parameter of the PyTorch reference model of a Config
// (bench/baselines/pytorch/towers.py): its state_dict key, its shape there,
// and the Segment of the flat buffer that holds its values in the same
// (C, row-major) order.
type TorchTensor struct {
	Name    string
	Shape   []int
	Segment Segment
}

// TorchStateDict lists the parameters of c in buffer order as the PyTorch
// reference model names and shapes them: the one mapping between the flat
// buffer and PyTorch's state_dict, used by export and by the golden tests.
// The names are the segments' own, except that
//
//	<norm>.gain                 → <norm>.weight   (LayerNorm and GroupNorm)
//	text.token_embedding        → text.token_embedding.weight   (nn.Embedding)
//
// and the shapes are PyTorch's: Linear weights Out×In, convolution and patch
// embedding weights Cout×Cin×k×k, embedding tables rows×width, position
// tables L×D, the class token D, the logit scale a 0-d tensor. Every
// segment's values are already in PyTorch's memory order, so a tensor is
// its segment's values as they are.
func (c Config) TorchStateDict() ([]TorchTensor, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.clone()
	shapes := torchShapes(c)
	l := layoutOf(c)
	out := make([]TorchTensor, 0, len(l.segs))
	for _, s := range l.segs {
		shape, ok := shapes[s.Name]
		if !ok {
			return nil, fmt.Errorf("model: segment %q has no PyTorch shape (tower kinds %q, %q)", s.Name, c.ImageTower, c.TextTower)
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		if n != s.Len {
			return nil, fmt.Errorf("model: segment %q holds %d values, its PyTorch shape %v holds %d", s.Name, s.Len, shape, n)
		}
		out = append(out, TorchTensor{Name: TorchName(s.Name), Shape: shape, Segment: s})
	}
	return out, nil
}

// TorchName is the state_dict key of the segment called name (see
// TorchStateDict).
func TorchName(name string) string {
	switch {
	case name == "text.token_embedding":
		return name + ".weight"
	case strings.HasSuffix(name, ".gain"):
		return strings.TrimSuffix(name, ".gain") + ".weight"
	}
	return name
}

// torchShapes gives the PyTorch shape of every segment of c (defaults
// applied), tower by tower, following the declare functions of the kinds.
func torchShapes(c Config) map[string][]int {
	sh := map[string][]int{LogitScaleName: {}}
	linear := func(name string, in, out int) {
		sh[name+".weight"] = []int{out, in}
		sh[name+".bias"] = []int{out}
	}
	norm := func(name string, n int) {
		sh[name+".gain"] = []int{n}
		sh[name+".bias"] = []int{n}
	}
	block := func(name string, d, f int) {
		norm(name+".norm1", d)
		sh[name+".self_attn.in_proj_weight"] = []int{3 * d, d}
		sh[name+".self_attn.in_proj_bias"] = []int{3 * d}
		linear(name+".self_attn.out_proj", d, d)
		norm(name+".norm2", d)
		linear(name+".linear1", d, f)
		linear(name+".linear2", f, d)
	}
	s, _ := c.imageShape()
	switch c.ImageTower {
	case TowerMLP:
		in := c.ImageIn
		for i, h := range c.ImageHidden {
			linear(fmt.Sprintf("image.fc%d", i), in, h)
			norm(fmt.Sprintf("image.ln%d", i), h)
			in = h
		}
		linear("image.proj", in, c.Dim)
	case TowerViT:
		v := c.ViT
		d := v.Width
		_, L := c.vitTokens()
		sh["image.patch_embed.weight"] = []int{d, s.Channels, v.Patch, v.Patch}
		sh["image.patch_embed.bias"] = []int{d}
		sh["image.cls_token"] = []int{d}
		sh["image.pos_embed"] = []int{L, d}
		for k := range v.Depth {
			block(fmt.Sprintf("image.blocks.%d", k), d, mlpWidth(v.MLP, d))
		}
		norm("image.norm", d)
		linear("image.proj", d, c.Dim)
	case TowerCNN:
		conv := func(name string, cin, cout, k int) { sh[name+".weight"] = []int{cout, cin, k, k} }
		conv("image.stem.conv", s.Channels, c.CNN.Width, 3)
		norm("image.stem.gn", c.CNN.Width)
		c.cnnBlocks(func(name string, cin, cout, _, _, _ int) {
			conv(name+".conv1", cin, cout, 3)
			norm(name+".gn1", cout)
			conv(name+".conv2", cout, cout, 3)
			norm(name+".gn2", cout)
			conv(name+".down.conv", cin, cout, 1)
			norm(name+".down.gn", cout)
		})
		linear("image.proj", c.CNN.Width<<(c.CNN.Stages-1), c.Dim)
	}
	if c.Fusion != "" {
		linear(FusionFC1Name, 2*c.Dim, c.FusionHidden)
		linear(FusionFC2Name, c.FusionHidden, c.Dim)
	}
	if c.TextVocab == 0 {
		return sh
	}
	switch c.TextTower {
	case TowerBagOfWords:
		sh["text.embed.weight"] = []int{c.TextVocab, c.TextHidden}
		norm("text.ln", c.TextHidden)
		linear("text.proj", c.TextHidden, c.Dim)
	case TowerTransformer:
		v := c.Transformer
		d := v.Width
		sh["text.token_embedding"] = []int{c.TextVocab, d}
		sh["text.positional_embedding"] = []int{v.Context, d}
		for k := range v.Depth {
			block(fmt.Sprintf("text.blocks.%d", k), d, mlpWidth(v.MLP, d))
		}
		norm("text.ln_final", d)
		linear("text.proj", d, c.Dim)
	}
	return sh
}

package model

import (
	"errors"
	"fmt"
	"math"
)

// Config describes the towers of a Model.
type Config struct {
	ImageIn     int    `json:"image_in"`     // input width of the image tower (784 for 28×28 images)
	ImageHidden []int  `json:"image_hidden"` // widths of the hidden layers of the image tower; at least one
	TextVocab   int    `json:"text_vocab"`   // vocabulary size; 0 = no text tower (SimCLR and MoCo use only the image tower)
	TextHidden  int    `json:"text_hidden"`  // width of the text tower's embedding bag
	Dim         int    `json:"dim"`          // embedding dimension d
	Activation  string `json:"activation"`
	// LayerNorm puts a LayerNorm before each hidden activation.
	LayerNorm bool `json:"layer_norm"`
	// InitLogitScale is t0, the initial value of t (logit scale s = exp t).
	InitLogitScale float64 `json:"init_logit_scale"`
	// LogitBias adds a learnable logit bias b after t, initialised to
	// InitLogitBias (sigmoid losses).
	LogitBias     bool    `json:"logit_bias,omitempty"`
	InitLogitBias float64 `json:"init_logit_bias,omitempty"`
	// ImageTower and TextTower name the registered kinds of the towers
	// ("" means TowerMLP and TowerBagOfWords).
	ImageTower string `json:"image_tower"`
	TextTower  string `json:"text_tower"`
	// ActionIn is the width of an action chunk's row (0: no action
	// tower); ActionHidden the widths of the action MLP's hidden layers;
	// ActionTower its kind ("" means TowerMLP).
	ActionIn     int    `json:"action_in,omitempty"`
	ActionHidden []int  `json:"action_hidden,omitempty"`
	ActionTower  string `json:"action_tower,omitempty"`
	// ActionTemporal shapes the "temporal" action tower (zero for others).
	ActionTemporal TemporalConfig `json:"action_temporal,omitzero"`
	// Fusion adds a fusion head of that kind (FusionMLP) after the logit
	// scale, which maps an image and an instruction embedding to one
	// observation embedding (FusionHead); FusionHidden is its hidden width
	// (0: 2·Dim). Empty: no head.
	Fusion       string `json:"fusion,omitempty"`
	FusionHidden int    `json:"fusion_hidden,omitempty"`
	// ImageShape is the C×H×W of the ImageIn values of an image, for the
	// towers that see images as images ("cnn", "vit"); zero means one
	// channel of a square √ImageIn × √ImageIn.
	ImageShape ImageShape `json:"image_shape,omitzero"`
	// CNN, ViT and Transformer shape the towers of those kinds.
	CNN         CNNConfig         `json:"cnn,omitzero"`
	ViT         ViTConfig         `json:"vit,omitzero"`
	Transformer TransformerConfig `json:"transformer,omitzero"`
}

// Activation names accepted by Config.Activation ("" means ActReLU).
const (
	ActReLU = "relu"
	ActGELU = "gelu"
)

// DefaultConfig is a 784→512→256→64 image tower with ReLU, a text tower of
// width 256 (vocabulary left at 0: set TextVocab to enable it), no LayerNorm,
// and t0 = ln(1/0.07).
func DefaultConfig() Config {
	return Config{
		ImageIn:        784,
		ImageHidden:    []int{512, 256},
		TextHidden:     256,
		Dim:            64,
		Activation:     ActReLU,
		InitLogitScale: math.Log(1 / 0.07),
	}
}

// Validate reports every invalid field of c, each error naming the field.
func (c Config) Validate() error {
	var errs []error
	img, err := kindOf(c.kindName(ModalityImage), ModalityImage)
	if err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, img.check(c)...)
	}
	if c.TextVocab < 0 {
		errs = append(errs, fmt.Errorf("model: Config.TextVocab = %d, want >= 0 (0 disables the text tower)", c.TextVocab))
	}
	if c.TextVocab > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("model: Config.TextVocab = %d, want at most %d (ids are int32)", c.TextVocab, math.MaxInt32))
	}
	if c.TextVocab > 0 {
		if txt, err := kindOf(c.kindName(ModalityText), ModalityText); err != nil {
			errs = append(errs, err)
		} else {
			errs = append(errs, txt.check(c)...)
		}
	}
	if c.ActionIn < 0 {
		errs = append(errs, fmt.Errorf("model: Config.ActionIn = %d, want >= 0 (0 disables the action tower)", c.ActionIn))
	}
	if c.ActionIn > 0 {
		if act, err := kindOf(c.kindName(ModalityAction), ModalityAction); err != nil {
			errs = append(errs, err)
		} else {
			errs = append(errs, act.check(c)...)
		}
	}
	errs = append(errs, c.checkFusion()...)
	if c.Dim <= 0 {
		errs = append(errs, fmt.Errorf("model: Config.Dim = %d, want > 0", c.Dim))
	}
	switch c.Activation {
	case "", ActReLU, ActGELU:
	default:
		errs = append(errs, fmt.Errorf("model: Config.Activation = %q, want %q or %q", c.Activation, ActReLU, ActGELU))
	}
	if math.IsNaN(c.InitLogitScale) || math.IsInf(c.InitLogitScale, 0) {
		errs = append(errs, fmt.Errorf("model: Config.InitLogitScale = %v, want a finite number (e.g. ln(1/0.07))", c.InitLogitScale))
	}
	if len(errs) == 0 {
		// Guard the buffer size against overflow only once the widths are sane.
		if n, ok := c.paramCount(); !ok {
			errs = append(errs, fmt.Errorf("model: Config describes more than %d parameters", n))
		}
	}
	return errors.Join(errs...)
}

// paramCount counts the parameters with overflow detection (limit 2^40).
func (c Config) paramCount() (int, bool) {
	const limit = 1 << 40
	n := 1 // the logit scale
	if c.LogitBias {
		n++
	}
	for _, side := range c.sides() {
		m, ok := c.kind(side).count(c, limit)
		if !ok || m > limit-n {
			return limit, false
		}
		n += m
	}
	m, ok := c.fusionParams(limit)
	if !ok || m > limit-n {
		return limit, false
	}
	return n + m, true
}

// NumParams is the length of the flat parameter buffer of c, logit scale
// included; 0 for an invalid configuration.
func (c Config) NumParams() int {
	if c.Validate() != nil {
		return 0
	}
	return layoutOf(c).n
}

// WithDefaults returns c as a model built from it has it: the towers'
// kinds named and the zero shape fields of their kinds filled in.
func (c Config) WithDefaults() Config { return c.clone() }

func (c Config) clone() Config {
	c.ImageHidden = append([]int(nil), c.ImageHidden...)
	if c.ActionHidden != nil {
		c.ActionHidden = append([]int(nil), c.ActionHidden...)
	}
	if c.ActionIn > 0 {
		c.ActionTower = c.kindName(ModalityAction)
	}
	if c.Activation == "" {
		c.Activation = ActReLU
	}
	if c.Fusion != "" {
		c.FusionHidden = c.fusionHidden()
	}
	c.ImageTower = c.kindName(ModalityImage)
	c.TextTower = c.kindName(ModalityText)
	return c.encoderDefaults()
}

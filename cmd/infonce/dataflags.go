package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/infonce/infonce/worker"
)

// dataFlags binds the flags of the data beyond --data to o.
func dataFlags(fs *flag.FlagSet, o *worker.DataOptions) {
	fs.StringVar(&o.ValData, "val-data", o.ValData, "data to evaluate on, the same forms as --data (default: the test split of mnist and idx:DIR, none for the others)")
	fs.IntVar(&o.ImageSize, "image-size", o.ImageSize, "side S of the square image views of sources other than mnist and idx:DIR (0: 64)")
	fs.IntVar(&o.ImageChannels, "image-channels", o.ImageChannels, "1 (grey) or 3 (RGB) channels of the image views (0: those of the first sample)")
	fs.Var((*floatPair)(&o.CropScale), "crop-scale", "area range lo,hi of the training view's random resized crop (default 0.9,1)")
	fs.Var(optFloat{&o.FlipProb}, "flip-prob", "probability of the training view's horizontal flip (default 0.5)")
	fs.Var(optFloats[float32, [3]float32]{&o.Mean}, "image-mean", "per-channel mean r,g,b the views are normalised by (default ImageNet's 0.485,0.456,0.406)")
	fs.Var(optFloats[float32, [3]float32]{&o.Std}, "image-std", "per-channel standard deviation r,g,b (default ImageNet's 0.229,0.224,0.225)")
	fs.StringVar(&o.Background, "image-background", o.Background, "colour #rrggbb that transparent pixels are composited onto (default white)")
	fs.Var(optFloat{&o.JitterProb}, "jitter-prob", "simclr, moco: probability of the colour jitter (default 0.8)")
	fs.Var(optFloats[float64, [4]float64]{&o.Jitter}, "jitter", "simclr, moco: jitter strengths brightness,contrast,saturation,hue (default 0.4,0.4,0.4,0.1)")
	fs.Var(optFloat{&o.GrayProb}, "gray-prob", "simclr, moco: probability of grayscale (default 0.2)")
	fs.Var(optFloat{&o.BlurProb}, "blur-prob", "simclr, moco: probability of the Gaussian blur (default 0.5)")
	fs.Var(optFloats[float64, [2]float64]{&o.BlurSigma}, "blur-sigma", "simclr, moco: range lo,hi of the blur's σ in pixels (default 0.1,2)")
	fs.StringVar(&o.Templates, "templates", o.Templates, "caption templates of labelled sources, one a line with {} for the class name")
	fs.StringVar(&o.CSVSeparator, "csv-separator", o.CSVSeparator, "csv: the field separator (default tab)")
	fs.StringVar(&o.CSVImageKey, "csv-image-key", o.CSVImageKey, "csv: the column of image paths (default filepath)")
	fs.StringVar(&o.CSVCaptionKey, "csv-caption-key", o.CSVCaptionKey, "csv: the column of captions (default title)")
	fs.StringVar(&o.CSVLabelKey, "csv-label-key", o.CSVLabelKey, "csv: the column of class labels (default none)")
	fs.StringVar(&o.CSVActionKey, "csv-action-key", o.CSVActionKey, "csv: the column of .npy action paths (default none)")
	fs.StringVar(&o.RLDSImageKey, "rlds-image-key", o.RLDSImageKey, "rlds: the camera's step feature (default the first Open X-Embodiment name present)")
	fs.StringVar(&o.RLDSInstructionKey, "rlds-instruction-key", o.RLDSInstructionKey, "rlds: the instruction's step feature")
	fs.StringVar(&o.RLDSActionKey, "rlds-action-key", o.RLDSActionKey, "rlds: the action's step feature")
	fs.IntVar(&o.VocabSize, "vocab-size", o.VocabSize, "vocabulary of the hashed bag-of-words tokenizer of free-text captions (0: 4096)")
	fs.IntVar(&o.CacheMB, "data-cache-mb", o.CacheMB, "keep up to this many MiB of decoded samples in memory, so that a small data set is decoded once (0: none)")
	fs.Float64Var(&o.MaxBadFraction, "max-bad-fraction", o.MaxBadFraction, "stop the run once more than this fraction of the samples read were bad (0: 0.01)")
}

// floatPair is a flag of two comma-separated numbers.
type floatPair [2]float64

func (p *floatPair) String() string {
	if p == nil || *p == ([2]float64{}) {
		return ""
	}
	return fmt.Sprintf("%g,%g", p[0], p[1])
}

func (p *floatPair) Set(s string) error {
	a, b, ok := strings.Cut(s, ",")
	if !ok {
		return fmt.Errorf("want two numbers lo,hi, got %q", s)
	}
	lo, err := strconv.ParseFloat(strings.TrimSpace(a), 64)
	if err != nil {
		return err
	}
	hi, err := strconv.ParseFloat(strings.TrimSpace(b), 64)
	if err != nil {
		return err
	}
	*p = floatPair{lo, hi}
	return nil
}

// optFloat is a flag of a number that is nil until set.
type optFloat struct{ p **float64 }

func (o optFloat) String() string {
	if o.p == nil || *o.p == nil {
		return ""
	}
	return strconv.FormatFloat(**o.p, 'g', -1, 64)
}

func (o optFloat) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return err
	}
	*o.p = &v
	return nil
}

// maskFlag is --mask-false-negatives: a switch (true, false) or the name
// of the id field that masks.
type maskFlag struct{ cfg *worker.Config }

func (m maskFlag) IsBoolFlag() bool { return true }

func (m maskFlag) String() string {
	if m.cfg == nil || !m.cfg.MaskFalseNegatives {
		return "false"
	}
	if m.cfg.MaskField == "" {
		return "true"
	}
	return m.cfg.MaskField
}

func (m maskFlag) Set(s string) error {
	switch s {
	case "true", "1":
		m.cfg.MaskFalseNegatives, m.cfg.MaskField = true, ""
	case "false", "0":
		m.cfg.MaskFalseNegatives, m.cfg.MaskField = false, ""
	default:
		m.cfg.MaskFalseNegatives, m.cfg.MaskField = true, s
	}
	return nil
}

// optFloats is a flag of N comma-separated numbers, nil until set.
type optFloats[E float32 | float64, A [2]E | [3]E | [4]E] struct{ p **A }

func (o optFloats[E, A]) String() string {
	if o.p == nil || *o.p == nil {
		return ""
	}
	return fmt.Sprint(**o.p)
}

func (o optFloats[E, A]) Set(s string) error {
	var a A
	parts := strings.Split(s, ",")
	if len(parts) != len(a) {
		return fmt.Errorf("want %d comma-separated numbers, got %q", len(a), s)
	}
	for i, f := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return err
		}
		a[i] = E(v)
	}
	*o.p = &a
	return nil
}

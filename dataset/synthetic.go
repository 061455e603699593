package dataset

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// domainSynthetic keeps the stream of synthetic samples apart.
const domainSynthetic uint64 = 0x73796e7468657469 // "syntheti"

// SyntheticConfig sets the shapes of synthetic samples. Zero fields take
// the defaults in brackets.
type SyntheticConfig struct {
	H, W, C int // image size [64, 64, 3]
	Words   int // words per caption [8]
	Vocab   int // distinct words [1000]
	Classes int // labels in [0, Classes) [10]
	Action  int // action dimension [0: no action]
}

func (c SyntheticConfig) withDefaults() SyntheticConfig {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.H, 64)
	def(&c.W, 64)
	def(&c.C, 3)
	def(&c.Words, 8)
	def(&c.Vocab, 1000)
	def(&c.Classes, 10)
	return c
}

// Synthetic is a source of random samples for speed measurements: images
// of uniform random bytes, captions of random words "w17 w503 …" (so that
// a tokenizer maps them to ids), a label, and an action when configured.
// Sample i is a pure function of (Seed, i).
type Synthetic struct {
	N    int
	Seed uint64
	Cfg  SyntheticConfig
}

func openSynthetic(arg string, opts OpenOptions) (Source, error) {
	n := 1024
	if arg != "" {
		v, err := strconv.Atoi(arg)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("dataset: synthetic:%s: want a positive number of samples", arg)
		}
		n = v
	}
	cfg := opts.Synthetic.withDefaults()
	if cfg.H < 1 || cfg.W < 1 || (cfg.C != 1 && cfg.C != 3) || cfg.H*cfg.W > MaxImagePixels ||
		cfg.Words < 0 || cfg.Vocab < 1 || cfg.Classes < 1 || cfg.Action < 0 {
		return nil, fmt.Errorf("dataset: synthetic: shapes %+v out of range", cfg)
	}
	return &Synthetic{N: n, Seed: opts.Seed, Cfg: cfg}, nil
}

// Name is "synthetic:N".
func (s *Synthetic) Name() string { return "synthetic:" + strconv.Itoa(s.N) }

// Len is N.
func (s *Synthetic) Len() int { return s.N }

// Fields are image, text and label, and action when configured.
func (s *Synthetic) Fields() []Field {
	f := []Field{FieldImage, FieldText, FieldLabel}
	if s.Cfg.Action > 0 {
		f = append(f, FieldAction)
	}
	return f
}

// Vocabulary is every word a synthetic caption can hold ("w0" … ), so
// that NewTokenizer(s.Vocabulary()) gives each word its own token id.
func (s *Synthetic) Vocabulary() []string {
	v := make([]string, s.Cfg.Vocab)
	for i := range v {
		v[i] = "w" + strconv.Itoa(i)
	}
	return v
}

// Sample fills dst with sample i.
func (s *Synthetic) Sample(ctx context.Context, i int, dst *Sample) error {
	if i < 0 || i >= s.N {
		return fmt.Errorf("dataset: %s: sample %d out of range [0, %d)", s.Name(), i, s.N)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c := s.Cfg
	r := newRNG(domainSynthetic, s.Seed, uint64(i))
	dst.Reset()
	dst.Index, dst.Key = i, strconv.Itoa(i)
	pix := make([]byte, c.H*c.W*c.C)
	for j := 0; j < len(pix); j += 8 {
		v := r.pcg.Uint64()
		for k := 0; k < 8 && j+k < len(pix); k++ {
			pix[j+k] = byte(v >> (8 * k))
		}
	}
	dst.Image = Picture{H: c.H, W: c.W, C: c.C, Pix: pix}
	var b strings.Builder
	for w := range c.Words {
		if w > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte('w')
		b.WriteString(strconv.Itoa(r.intn(c.Vocab)))
	}
	dst.Text = b.String()
	dst.Label = r.intn(c.Classes)
	if c.Action > 0 {
		for range c.Action {
			dst.Action = append(dst.Action, float32(r.normal()))
		}
		dst.ActionShape = append(dst.ActionShape, c.Action)
	}
	return nil
}

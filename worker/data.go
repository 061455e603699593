package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"image/color"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/infonce/infonce/dataset"
	_ "github.com/infonce/infonce/dataset/sources" // folder:, csv:, wds:, rlds:
)

// DataOptions are the settings of the data beyond the --data spec.
type DataOptions struct {
	// ValData is the source evaluated on (the same forms as Data); empty
	// means the test split of mnist and idx:DIR, and no evaluation for the
	// other sources.
	ValData string `json:"val_data,omitempty"`
	// ImageSize is S, the side of the square image views of a source
	// other than mnist and idx:DIR (whose images keep their own size);
	// 0 means 64.
	ImageSize int `json:"image_size,omitempty"`
	// ImageChannels is 1 (grey) or 3 (RGB); 0 takes the channels of the
	// source's first sample.
	ImageChannels int `json:"image_channels,omitempty"`
	// CropScale is the area range of the training view's random resized
	// crop (zero: [0.9, 1]); FlipProb its probability of a horizontal flip
	// (nil: 0.5).
	CropScale [2]float64 `json:"crop_scale,omitempty"`
	FlipProb  *float64   `json:"flip_prob,omitempty"`
	// Mean and Std normalise each channel of every view (nil: ImageNet's).
	Mean *[3]float32 `json:"image_mean,omitempty"`
	Std  *[3]float32 `json:"image_std,omitempty"`
	// Background is the colour transparent pixels are composited onto, as
	// #rrggbb ("" : white).
	Background string `json:"image_background,omitempty"`
	// SimCLR's augmentations (the views of simclr and moco): the colour
	// jitter's probability and its strengths (brightness, contrast,
	// saturation, hue), the probabilities of grayscale and of blur, and the
	// blur's σ range; unset fields take the SimCLR paper's 0.8,
	// (0.4, 0.4, 0.4, 0.1), 0.2, 0.5 and [0.1, 2].
	JitterProb *float64    `json:"jitter_prob,omitempty"`
	Jitter     *[4]float64 `json:"jitter,omitempty"`
	GrayProb   *float64    `json:"gray_prob,omitempty"`
	BlurProb   *float64    `json:"blur_prob,omitempty"`
	BlurSigma  *[2]float64 `json:"blur_sigma,omitempty"`
	// Templates is a file of caption templates for labelled sources.
	Templates string `json:"templates,omitempty"`
	// The keys of csv: manifests and rlds: folders (dataset.OpenOptions).
	CSVSeparator       string `json:"csv_separator,omitempty"`
	CSVImageKey        string `json:"csv_image_key,omitempty"`
	CSVCaptionKey      string `json:"csv_caption_key,omitempty"`
	CSVLabelKey        string `json:"csv_label_key,omitempty"`
	CSVActionKey       string `json:"csv_action_key,omitempty"`
	RLDSImageKey       string `json:"rlds_image_key,omitempty"`
	RLDSInstructionKey string `json:"rlds_instruction_key,omitempty"`
	RLDSActionKey      string `json:"rlds_action_key,omitempty"`
	// VocabSize is the vocabulary of the hashed bag-of-words tokenizer of
	// sources with free-text captions (0: 4096).
	VocabSize int `json:"vocab_size,omitempty"`
	// CacheMB keeps up to this many MiB of decoded samples in memory, so
	// that a small data set is decoded once (0: no cache).
	CacheMB int `json:"data_cache_mb,omitempty"`
	// MaxBadFraction is the fraction of bad samples (counted by reason and
	// replaced) past which the run stops; 0 means 0.01.
	MaxBadFraction float64 `json:"max_bad_fraction,omitempty"`
}

// Defaults of DataOptions.
const (
	DefaultImageSize      = 64
	DefaultVocabSize      = 4096
	DefaultMaxBadFraction = 0.01
)

func (o DataOptions) imageSize() int { return cmp.Or(o.ImageSize, DefaultImageSize) }
func (o DataOptions) vocabSize() int { return cmp.Or(o.VocabSize, DefaultVocabSize) }
func (o DataOptions) maxBadFraction() float64 {
	if o.MaxBadFraction == 0 {
		return DefaultMaxBadFraction
	}
	return o.MaxBadFraction
}

func (o DataOptions) validate() error {
	var errs []error
	if o.ImageSize < 0 || o.ImageSize > 4096 {
		errs = append(errs, fmt.Errorf("--image-size %d: want 1 to 4096 (0: %d)", o.ImageSize, DefaultImageSize))
	}
	if o.ImageChannels != 0 && o.ImageChannels != 1 && o.ImageChannels != 3 {
		errs = append(errs, fmt.Errorf("--image-channels %d: want 1 or 3 (0: the data's own)", o.ImageChannels))
	}
	if s := o.CropScale; s != [2]float64{} && !(s[0] > 0 && s[0] <= s[1] && s[1] <= 1) {
		errs = append(errs, fmt.Errorf("--crop-scale %g,%g: want 0 < lo ≤ hi ≤ 1", s[0], s[1]))
	}
	if p := o.FlipProb; p != nil && !(*p >= 0 && *p <= 1) {
		errs = append(errs, fmt.Errorf("--flip-prob %g: want a probability", *p))
	}
	if _, err := parseColour(o.Background); err != nil {
		errs = append(errs, fmt.Errorf("--image-background %q: %w", o.Background, err))
	}
	if o.CacheMB < 0 {
		errs = append(errs, fmt.Errorf("--data-cache-mb %d: must not be negative", o.CacheMB))
	}
	if o.VocabSize < 0 || o.VocabSize == 1 {
		errs = append(errs, fmt.Errorf("--vocab-size %d: want at least 2 (0: %d)", o.VocabSize, DefaultVocabSize))
	}
	if !(o.MaxBadFraction >= 0 && o.MaxBadFraction < 1) {
		errs = append(errs, fmt.Errorf("--max-bad-fraction %g: want a fraction in [0, 1)", o.MaxBadFraction))
	}
	return errors.Join(errs...)
}

// isIDX reports whether spec names an in-memory idx data set (mnist,
// idx:DIR), whose images keep their grey 28×28-style layout and the
// trainer's own augmentations.
func isIDX(spec string) bool { return spec == "mnist" || strings.HasPrefix(spec, "idx:") }

// openOptions are the dataset.OpenOptions of the run's data.
func (c Config) openOptions(test bool) dataset.OpenOptions {
	o := c.DataOptions
	bg, _ := parseColour(o.Background) // checked by Validate
	return dataset.OpenOptions{
		Background: bg,
		Test:       test, Classes: c.Classes, Templates: o.Templates, Seed: c.Seed,
		Separator: o.CSVSeparator, ImageKey: cmp.Or(o.CSVImageKey, o.RLDSImageKey), CaptionKey: o.CSVCaptionKey,
		LabelKey: o.CSVLabelKey, ActionKey: cmp.Or(o.CSVActionKey, o.RLDSActionKey), Instruction: o.RLDSInstructionKey,
	}
}

// Data is what a run trains and evaluates on: the in-memory idx Set of
// mnist and idx:DIR, or the training and validation sources of any other
// spec (dataset.Open).
type Data struct {
	Name string
	// Set is the idx data set, or nil.
	Set *dataset.Set
	// Train and Val are the sources of the other specs (Val nil without
	// --val-data).
	Train, Val dataset.Source
}

// LoadData opens the data of cfg: the idx Set for mnist and idx:DIR, the
// sources of dataset.Open otherwise. A source that does not exist or holds
// no usable sample fails here, before training, saying what was looked
// for.
func LoadData(cfg Config) (*Data, error) {
	if isIDX(cfg.Data) {
		set, err := dataset.Load(cfg.Data, cfg.Classes)
		if err != nil {
			return nil, err
		}
		return &Data{Name: set.Name, Set: set}, nil
	}
	train, err := dataset.Open(cfg.Data, cfg.openOptions(false))
	if err != nil {
		return nil, fmt.Errorf("--data %s: %w", cfg.Data, err)
	}
	d := &Data{Name: train.Name(), Train: train}
	if v := cfg.DataOptions.ValData; v != "" {
		if d.Val, err = dataset.Open(v, cfg.openOptions(isIDX(v))); err != nil {
			return nil, fmt.Errorf("--val-data %s: %w", v, err)
		}
	}
	return d, nil
}

// classesOf returns the class names of a source that has them.
func classesOf(s dataset.Source) []string {
	if c, ok := s.(interface{ Classes() []string }); ok {
		return c.Classes()
	}
	return nil
}

// captionerOf returns the caption templates of a source whose captions
// are rendered from its classes (folder:DIR), or nil.
func captionerOf(s dataset.Source) *dataset.Captioner {
	if c, ok := s.(interface{ Captioner() *dataset.Captioner }); ok {
		return c.Captioner()
	}
	return nil
}

// textGroup is the id of a caption for masking false negatives: equal
// texts get equal ids (a 31-bit FNV-1a hash).
func textGroup(s string) int32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return int32(h.Sum32() >> 1)
}

// maxSubstitutes bounds how many following samples stand in for a bad
// one before the step fails.
const maxSubstitutes = 64

// badSamples counts the samples a run could not use, by reason, with the
// first few keys of each reason for the message that stops a run.
type badSamples struct {
	mu       sync.Mutex
	read     int64
	bad      int64
	byReason map[string]int64
	examples map[string][]string
	logged   map[string]bool
}

// note records one read sample, bad with err when err is not nil.
func (b *badSamples) note(err error, log *slog.Logger) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.read++
	if err == nil {
		return
	}
	if b.byReason == nil {
		b.byReason, b.examples, b.logged = map[string]int64{}, map[string][]string{}, map[string]bool{}
	}
	reason := dataset.Reason(err)
	b.bad++
	b.byReason[reason]++
	var bs *dataset.BadSample
	key := err.Error()
	if errors.As(err, &bs) {
		key = bs.Key
	}
	if len(b.examples[reason]) < 3 {
		b.examples[reason] = append(b.examples[reason], key)
	}
	if !b.logged[reason] && log != nil {
		b.logged[reason] = true
		log.Warn("bad sample skipped; later ones of this reason are counted, not logged", "reason", reason, "sample", key, "err", err)
	}
}

// any reports whether a bad sample was met.
func (b *badSamples) any() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bad > 0
}

// counts returns the bad samples by reason.
func (b *badSamples) counts() map[string]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]int64, len(b.byReason))
	for k, v := range b.byReason {
		out[k] = v
	}
	return out
}

// check returns an error naming examples once more than frac of the
// samples read (at least 1/frac of them) were bad.
func (b *badSamples) check(frac float64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bad == 0 || float64(b.read) < 1/frac || float64(b.bad) <= frac*float64(b.read) {
		return nil
	}
	reasons := make([]string, 0, len(b.byReason))
	for r := range b.byReason {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	var parts []string
	for _, r := range reasons {
		parts = append(parts, fmt.Sprintf("%s %d (e.g. %s)", r, b.byReason[r], strings.Join(b.examples[r], ", ")))
	}
	return fmt.Errorf("%w: %d of %d samples read were bad, more than --max-bad-fraction %g: %s; fix or remove them (infonce data verify lists them all)",
		ErrTooManyBadSamples, b.bad, b.read, frac, strings.Join(parts, "; "))
}

// ErrTooManyBadSamples stops a run whose data is mostly unusable.
var ErrTooManyBadSamples = errors.New("too many bad samples")

// readSample fills s with sample i of the training source, or, when it is
// bad, with the first good one of the samples that follow it (cyclically):
// a pure function of i, so every rank substitutes alike. Each bad sample
// met is counted.
func (t *Trainer[T]) readSample(i int, s *dataset.Sample) error {
	n := t.src.Len()
	for k := 0; k < maxSubstitutes; k++ {
		j := (i + k) % n
		if t.cache.get(j, s) {
			t.bad.note(nil, nil)
			return nil
		}
		err := t.src.Sample(context.Background(), j, s)
		t.bad.note(err, t.log)
		if err == nil {
			t.cache.put(j, s)
			return nil
		}
		if !errors.Is(err, dataset.ErrBadSample) {
			return fmt.Errorf("sample %d: %w", (i+k)%n, err)
		}
	}
	return fmt.Errorf("%w: samples %d to %d of %s are all bad", ErrTooManyBadSamples, i, i+maxSubstitutes-1, t.src.Name())
}

// sampleCache keeps decoded samples by index up to a byte budget; once it
// is full it keeps what it has (a data set that fits is decoded once; one
// that does not keeps its first samples). The pixels are shared
// read-only: views only read them, and Sample.Reset drops them.
type sampleCache struct {
	mu           sync.RWMutex
	m            map[int]*dataset.Sample
	bytes, limit int64
}

func newSampleCache(mb int) *sampleCache {
	if mb <= 0 {
		return nil
	}
	return &sampleCache{m: map[int]*dataset.Sample{}, limit: int64(mb) << 20}
}

// get fills dst with sample i when it is cached.
func (c *sampleCache) get(i int, dst *dataset.Sample) bool {
	if c == nil {
		return false
	}
	c.mu.RLock()
	s, ok := c.m[i]
	c.mu.RUnlock()
	if !ok {
		return false
	}
	act, shape, state := dst.Action[:0], dst.ActionShape[:0], dst.State[:0]
	*dst = *s
	dst.Action = append(act, s.Action...)
	dst.ActionShape = append(shape, s.ActionShape...)
	dst.State = append(state, s.State...)
	return true
}

// put keeps a copy of s as sample i while the budget allows.
func (c *sampleCache) put(i int, s *dataset.Sample) {
	if c == nil {
		return
	}
	size := int64(len(s.Image.Pix) + len(s.Text) + 4*(len(s.Action)+len(s.State)) + 128)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[i]; ok || c.bytes+size > c.limit {
		return
	}
	cp := *s
	cp.Action = append([]float32(nil), s.Action...)
	cp.ActionShape = append([]int(nil), s.ActionShape...)
	cp.State = append([]float32(nil), s.State...)
	c.m[i] = &cp
	c.bytes += size
}

// parseColour reads #rrggbb; "" is nil (the sources' default, white).
func parseColour(s string) (color.Color, error) {
	if s == "" {
		return nil, nil
	}
	var r, g, b uint8
	if n, err := fmt.Sscanf(s, "#%02x%02x%02x", &r, &g, &b); err != nil || n != 3 || len(s) != 7 {
		return nil, fmt.Errorf("want a colour #rrggbb")
	}
	return color.RGBA{r, g, b, 255}, nil
}

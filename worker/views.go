package worker

import (
	"fmt"
	"slices"

	"github.com/infonce/infonce/dataset"
)

// setSource prepares a run on a source other than an idx set: the image
// views' shape and transforms, and where the captions come from.
func (t *Trainer[T]) setSource(src dataset.Source) error {
	if src == nil || src.Len() == 0 {
		return fmt.Errorf("--data %s: no samples", t.Cfg.Data)
	}
	t.src = src
	o := t.Cfg.DataOptions
	t.cache = newSampleCache(o.CacheMB)
	C := o.ImageChannels
	if C == 0 {
		// The channels of the first usable sample: a pure function of
		// the data, the same on every rank.
		var s dataset.Sample
		if err := t.readSample(0, &s); err != nil {
			return fmt.Errorf("--data %s: %w", t.Cfg.Data, err)
		}
		C = 3
		if s.Image.C == 1 {
			C = 1
		}
	}
	S := o.imageSize()
	t.viewSimCLR = dataset.SimCLRViewConfig(S)
	t.viewSimCLR.Channels = C
	t.viewEva = dataset.EvalViewConfig(S)
	t.viewEva.Channels = C
	// The plain training view of image–text objectives: OpenCLIP's random
	// resized crop of 90 to 100 % of the image, and a flip.
	t.viewCLIP = t.viewSimCLR
	t.viewCLIP.Scale, t.viewCLIP.FlipProb = [2]float64{0.9, 1}, 0.5
	t.viewCLIP.JitterProb, t.viewCLIP.GrayProb, t.viewCLIP.BlurProb = 0, 0, 0
	if o.CropScale != [2]float64{} {
		t.viewCLIP.Scale = o.CropScale
	}
	if o.FlipProb != nil {
		t.viewCLIP.FlipProb = *o.FlipProb
	}
	aug := &t.viewSimCLR
	if o.JitterProb != nil {
		aug.JitterProb = *o.JitterProb
	}
	if j := o.Jitter; j != nil {
		aug.Brightness, aug.Contrast, aug.Saturation, aug.Hue = j[0], j[1], j[2], j[3]
	}
	if o.GrayProb != nil {
		aug.GrayProb = *o.GrayProb
	}
	if o.BlurProb != nil {
		aug.BlurProb = *o.BlurProb
	}
	if o.BlurSigma != nil {
		aug.BlurSigma = *o.BlurSigma
	}
	for _, c := range []*dataset.ViewConfig{&t.viewCLIP, &t.viewSimCLR, &t.viewEva} {
		if o.Mean != nil {
			c.Mean = *o.Mean
		}
		if o.Std != nil {
			c.Std = *o.Std
		}
	}
	for _, c := range []dataset.ViewConfig{t.viewCLIP, t.viewSimCLR, t.viewEva} {
		if err := c.Validate(); err != nil {
			return fmt.Errorf("image views: %w", err)
		}
	}
	if t.textView >= 0 {
		if c := captionerOf(src); c != nil && len(classesOf(src)) > 0 {
			t.srcCaptions = c
		} else if !slices.Contains(src.Fields(), dataset.FieldText) {
			return fmt.Errorf("--objective %s reads captions, and --data %s has none (no text field and no classes to render them from)", t.Cfg.Objective, t.Cfg.Data)
		}
	}
	return nil
}

// rowMeta is what the text view needs of a drawn row's sample.
type rowMeta struct {
	text    string
	label   int
	task    int
	episode int64
	index   int // the sample drawn: the row's own, or the one that stood in for it
}

// drawSourceRows is drawRows for a source: each sample is read once (a bad
// one replaced as readSample says), its image turned into the views of the
// objective, and its caption and label kept in meta[r].
func (t *Trainer[T]) drawSourceRows(dst []T, meta []rowMeta, step int64, local []int, lo, hi int) {
	P := t.pixels()
	b := len(local)
	epoch := int(step / int64(t.Sampler.StepsPerEpoch()))
	var s, near dataset.Sample
	var row32 []float32
	if _, ok := any(dst).([]float32); !ok {
		row32 = make([]float32, P)
	}
	for r := lo; r < hi; r++ {
		i := local[r]
		if err := t.readSample(i, &s); err != nil {
			t.noteDataErr(err)
			return
		}
		for v, vi := range t.imageViews {
			row := dst[(v*b+r)*P : (v*b+r+1)*P]
			out := row32
			if out == nil {
				out = any(row).([]float32)
			}
			spec := t.in.Views[vi].ViewSpec
			cfg, view, pic, key := t.viewCLIP, 0, s.Image, s.Index
			if a := spec.Augment; a > 0 {
				cfg, view = t.viewSimCLR, a-1
			}
			if spec.Nearby {
				j := t.episodes.nearbyDir(t.Cfg.Seed, epoch, s.Index, t.Cfg.tcnWindow(), spec.Later)
				if err := t.readSample(j, &near); err != nil {
					t.noteDataErr(err)
					return
				}
				pic, key = near.Image, near.Index
			}
			if err := dataset.View(cfg, pic, t.Cfg.Seed, epoch, key, view, out); err != nil {
				t.noteDataErr(fmt.Errorf("sample %d (%s): view: %w", i, s.Key, err))
				return
			}
			if row32 != nil {
				for j, x := range out {
					row[j] = T(x)
				}
			}
		}
		meta[r] = rowMeta{text: s.Text, label: s.Label, task: s.Task, episode: s.Episode, index: s.Index}
	}
}

func (t *Trainer[T]) noteDataErr(err error) {
	t.dataMu.Lock()
	defer t.dataMu.Unlock()
	if t.dataErr == nil {
		t.dataErr = err
	}
}

// takeDataErr returns and clears the first error of drawing rows.
func (t *Trainer[T]) takeDataErr() error {
	t.dataMu.Lock()
	defer t.dataMu.Unlock()
	err := t.dataErr
	t.dataErr = nil
	return err
}

// fillSourceCaptions builds the text view of a source run from the rows'
// samples (kept by drawSourceRows in t.rowMeta): the caption each carries,
// or for a source whose captions are rendered from its classes, one
// template per sample drawn from (seed, epoch, sample) as for an idx set.
func (t *Trainer[T]) fillSourceCaptions(epoch int, local []int) error {
	t.ids, t.offsets, t.capIDs = t.ids[:0], t.offsets[:0], t.capIDs[:0]
	for r, i := range local {
		meta := t.rowMeta[r]
		t.offsets = append(t.offsets, int32(len(t.ids)))
		if t.srcCaptions == nil {
			t.ids = t.tokenizer.Encode(meta.text, t.ids)
			t.capIDs = append(t.capIDs, textGroup(meta.text))
			continue
		}
		nT := t.captioner.NumTemplates()
		if meta.label < 0 || meta.label*nT >= len(t.tokens) {
			return fmt.Errorf("sample %d: label %d outside the %d classes", i, meta.label, len(t.tokens)/nT)
		}
		m := t.captioner.Pick(t.Cfg.Seed, epoch, i)
		t.ids = append(t.ids, t.tokens[meta.label*nT+m]...)
		t.capIDs = append(t.capIDs, t.captioner.ID(meta.label, m))
	}
	return nil
}

// fillActions builds the action view of the local rows: the chunk of
// actions that starts at each row's sample (the one drawn for it).
func (t *Trainer[T]) fillActions(local []int) {
	w := t.actions.rowLen()
	t.xa = grow(t.xa, len(local)*w)
	t.actionRow = grow(t.actionRow, w)
	row := t.actionRow
	for r := range local {
		t.actions.fill(t.rowMeta[r].index, row)
		for j, v := range row {
			t.xa[r*w+j] = T(v)
		}
	}
}

// maskGroups replaces the text view's groups (caption ids) by the id field
// --mask-false-negatives names: the rows' labels, tasks or episodes. A row
// without the field gets an id of its own (−1 − its row), so that it masks
// nothing.
func (t *Trainer[T]) maskGroups(local []int) error {
	f := t.Cfg.MaskField
	if f == "" || f == MaskCaption {
		return nil
	}
	t.groups = t.groups[:0]
	for r, i := range local {
		id := int64(-1 - r)
		switch {
		case f == MaskLabel && t.Set != nil:
			id = int64(t.Set.Train.Labels[i])
		case t.Set != nil:
			return fmt.Errorf("--mask-false-negatives %s: %s has no %s field", f, t.Cfg.Data, f)
		case f == MaskLabel && t.rowMeta[r].label >= 0:
			id = int64(t.rowMeta[r].label)
		case f == MaskTask && t.rowMeta[r].task >= 0:
			id = int64(t.rowMeta[r].task)
		case f == MaskEpisode && t.rowMeta[r].episode >= 0:
			id = t.rowMeta[r].episode
		}
		t.groups = append(t.groups, int32(id))
	}
	return nil
}

package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/model"
)

// EmbedRow names one row of EmbedImages' output: the sample's index in
// its source and its key there (the file, the tar member, "split/index"
// for an idx set).
type EmbedRow struct {
	Sample int    `json:"sample"`
	Key    string `json:"key"`
}

// OpenImages opens spec (any dataset.Open spec) with the run's source
// options (keys of a manifest, classes, templates); test selects the test
// split of mnist, idx:DIR and rlds:DIR.
func (t *Trainer[T]) OpenImages(spec string, test bool) (dataset.Source, error) {
	src, err := dataset.Open(spec, t.Cfg.openOptions(test))
	if err != nil {
		return nil, fmt.Errorf("images %s: %w", spec, err)
	}
	return src, nil
}

// imageRow writes the input row of the image tower for picture p of
// sample i into dst: the evaluation view of the run (resize, centre crop,
// normalisation) for a run on a source; for a run on an idx set, whose
// towers see raw pixels x/255, the picture itself, which must then have
// the run's grey H×W.
func (t *Trainer[T]) imageRow(p dataset.Picture, i int, dst []float32) error {
	if t.Set == nil {
		return dataset.View(t.viewEva, p, t.Cfg.Seed, -1, i, 0, dst)
	}
	if p.C != 1 || p.H*p.W != len(dst) || len(p.Pix) != len(dst) {
		return fmt.Errorf("a %d×%d×%d picture, and the model, trained on %s, reads grey images of %d pixels", p.H, p.W, p.C, t.Cfg.Data, len(dst))
	}
	dataset.Pixels(p.Pix, dst)
	return nil
}

// EmbedImages returns the L2-normalised embeddings (n × Dim, row-major) of
// the usable samples of src, encoded batch at a time through the image
// tower, and for each row the sample it comes from. Samples that cannot be
// read (dataset.ErrBadSample) are left out and counted in bad. It runs on
// a copy of the architecture over the parameters, so the trainer's caches
// are untouched.
func (t *Trainer[T]) EmbedImages(ctx context.Context, src dataset.Source, batch int) (emb []T, rows []EmbedRow, bad int, err error) {
	if batch <= 0 {
		return nil, nil, 0, fmt.Errorf("embed images: batch %d, want > 0", batch)
	}
	m, err := model.NewWithParams[T](t.Model.Cfg, t.Model.P.W)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("embed images: %w", err)
	}
	P, d := t.Model.Cfg.ImageIn, t.Model.Cfg.Dim
	if t.Set == nil && t.viewEva.ViewLen() != P {
		return nil, nil, 0, fmt.Errorf("embed images: the evaluation view holds %d values, the image tower reads %d", t.viewEva.ViewLen(), P)
	}
	row := make([]float32, P)
	x := make([]T, 0, batch*P)
	var names []EmbedRow
	flush := func() error {
		n := len(names)
		if n == 0 {
			return nil
		}
		e, err := m.Image.Forward(model.Rows(x, n))
		if err != nil {
			return fmt.Errorf("embed images %d..%d: %w", len(rows), len(rows)+n, err)
		}
		emb = append(emb, e[:n*d]...)
		rows = append(rows, names...)
		x, names = x[:0], names[:0]
		return nil
	}
	var s dataset.Sample
	for i := 0; i < src.Len(); i++ {
		if err := ctx.Err(); err != nil {
			return nil, nil, bad, err
		}
		err := src.Sample(ctx, i, &s)
		if errors.Is(err, dataset.ErrBadSample) {
			bad++
			continue
		}
		if err != nil {
			return nil, nil, bad, fmt.Errorf("sample %d of %s: %w", i, src.Name(), err)
		}
		if err := t.imageRow(s.Image, i, row); err != nil {
			return nil, nil, bad, fmt.Errorf("sample %d of %s: %w", i, src.Name(), err)
		}
		for _, v := range row {
			x = append(x, T(v))
		}
		key := s.Key
		if key == "" {
			key = fmt.Sprintf("%s/%d", src.Name(), i)
		}
		names = append(names, EmbedRow{Sample: i, Key: key})
		if len(names) == batch {
			if err := flush(); err != nil {
				return nil, nil, bad, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, nil, bad, err
	}
	return emb, rows, bad, nil
}

// EmbedTexts returns the L2-normalised embeddings (len(texts) × Dim) of
// texts, tokenised as the run's captions are and encoded batch at a time
// through the text tower.
func (t *Trainer[T]) EmbedTexts(ctx context.Context, texts []string, batch int) ([]T, error) {
	if batch <= 0 {
		return nil, fmt.Errorf("embed texts: batch %d, want > 0", batch)
	}
	if t.Model.Text == nil || t.tokenizer == nil {
		return nil, errors.New("embed texts: the model has no text tower (an image-only objective)")
	}
	m, err := model.NewWithParams[T](t.Model.Cfg, t.Model.P.W)
	if err != nil {
		return nil, fmt.Errorf("embed texts: %w", err)
	}
	d := t.Model.Cfg.Dim
	out := make([]T, 0, len(texts)*d)
	var ids, offsets []int32
	for lo := 0; lo < len(texts); lo += batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+batch, len(texts))
		ids, offsets = ids[:0], offsets[:0]
		for _, s := range texts[lo:hi] {
			offsets = append(offsets, int32(len(ids)))
			ids = t.tokenizer.Encode(s, ids)
		}
		v, err := m.Text.Forward(model.Bags[T](ids, offsets, hi-lo))
		if err != nil {
			return nil, fmt.Errorf("embed texts %d..%d: %w", lo, hi, err)
		}
		out = append(out, v[:(hi-lo)*d]...)
	}
	return out, nil
}

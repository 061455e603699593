package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/eval"
	"github.com/infonce/infonce/model"
)

// maxEvalSamples bounds the samples of a source that an evaluation reads:
// the validation samples, and the training samples of the linear probe.
const maxEvalSamples = 10000

// evalSet is what an evaluation reads of a source: the evaluation views of
// its first samples, with their labels (−1 when unlabelled) and captions.
type evalSet[T any] struct {
	n      int
	x      []T // n rows of the evaluation view
	labels []int
	tasks  []int // each row's task id, −1 when unknown
	// episodes and steps place each row in its episode (episode −1: the
	// sample has none).
	episodes []int64
	steps    []int
	texts    []string
	index    []int // each row's sample index in the source
}

// readEvalSet reads the first min(Len, maxEvalSamples) usable samples of
// src through the evaluation view; bad samples are counted and left out.
func (t *Trainer[T]) readEvalSet(ctx context.Context, src dataset.Source) (*evalSet[T], error) {
	P := t.viewEva.ViewLen()
	n := min(src.Len(), maxEvalSamples)
	e := &evalSet[T]{x: make([]T, 0, n*P)}
	row := make([]float32, P)
	var s dataset.Sample
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := src.Sample(ctx, i, &s)
		t.bad.note(err, t.log)
		if errors.Is(err, dataset.ErrBadSample) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("evaluation sample %d of %s: %w", i, src.Name(), err)
		}
		if err := dataset.View(t.viewEva, s.Image, t.Cfg.Seed, -1, i, 0, row); err != nil {
			return nil, fmt.Errorf("evaluation sample %d of %s: %w", i, src.Name(), err)
		}
		for _, v := range row {
			e.x = append(e.x, T(v))
		}
		e.labels = append(e.labels, s.Label)
		e.tasks = append(e.tasks, s.Task)
		ep := int64(-1)
		if s.Has(dataset.FieldEpisode) {
			ep = s.Episode
		}
		e.episodes, e.steps = append(e.episodes, ep), append(e.steps, s.Step)
		e.texts = append(e.texts, s.Text)
		e.index = append(e.index, i)
		e.n++
	}
	if e.n == 0 {
		return nil, fmt.Errorf("evaluation: %s holds no usable sample", src.Name())
	}
	return e, nil
}

// encodeRows returns the embeddings (n×d) and the features of the image
// tower of n rows of x.
func (t *Trainer[T]) encodeRows(ctx context.Context, m *model.Model[T], x []T, n int) (emb, feat []T, err error) {
	P, d := len(x)/max(n, 1), t.Cfg.Dim
	emb = make([]T, n*d)
	for lo := 0; lo < n; lo += evalBatch {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		hi := min(lo+evalBatch, n)
		e, err := m.Image.Forward(model.Rows(x[lo*P:hi*P], hi-lo))
		if err != nil {
			return nil, nil, fmt.Errorf("encode images %d..%d: %w", lo, hi, err)
		}
		copy(emb[lo*d:hi*d], e)
		f := m.Image.Features()
		h := len(f) / (hi - lo)
		if feat == nil {
			feat = make([]T, n*h)
		}
		copy(feat[lo*h:hi*h], f)
	}
	return emb, feat, nil
}

// encodeTexts returns the n×d embeddings of texts.
func (t *Trainer[T]) encodeTexts(m *model.Model[T], texts []string) ([]T, error) {
	d := t.Cfg.Dim
	out := make([]T, len(texts)*d)
	var ids, offsets []int32
	for lo := 0; lo < len(texts); lo += evalBatch {
		hi := min(lo+evalBatch, len(texts))
		ids, offsets = ids[:0], offsets[:0]
		for _, s := range texts[lo:hi] {
			offsets = append(offsets, int32(len(ids)))
			ids = t.tokenizer.Encode(s, ids)
		}
		v, err := m.Text.Forward(model.Bags[T](ids, offsets, hi-lo))
		if err != nil {
			return nil, fmt.Errorf("encode captions %d..%d: %w", lo, hi, err)
		}
		copy(out[lo*d:hi*d], v)
	}
	return out, nil
}

// evaluateSources is Evaluate for a run on sources: on the validation
// source, retrieval in both directions when its samples have captions,
// and, when they have labels of known classes, the linear probe on the
// frozen image features (trained on the first training samples) and
// zero-shot classification through the class templates.
func (t *Trainer[T]) evaluateSources(ctx context.Context) (Evaluation, error) {
	var ev Evaluation
	if t.Data.Val == nil {
		t.log.Info("no --val-data: the run is not evaluated")
		return ev, nil
	}
	m, err := model.NewWithParams[T](t.Model.Cfg, t.Model.P.W)
	if err != nil {
		return ev, fmt.Errorf("evaluation model: %w", err)
	}
	d := t.Cfg.Dim
	val, err := t.readEvalSet(ctx, t.Data.Val)
	if err != nil {
		return ev, err
	}
	valEmb, valFeat, err := t.encodeRows(ctx, m, val.x, val.n)
	if err != nil {
		return ev, err
	}
	// Labels: a class index per sample; class names (for zero-shot)
	// when the source has them (folder:, csv: with names), else only the
	// count, from the labels (wds: cls).
	classes := classesOf(t.src)
	nClasses := len(classes)
	if nClasses == 0 && !slices.Contains(val.labels, -1) {
		nClasses = slices.Max(val.labels) + 1
	}
	inRange := func(l int) bool { return l < 0 || l >= nClasses }
	labelled := nClasses > 1 && !slices.ContainsFunc(val.labels, inRange)
	if labelled {
		train, err := t.readEvalSet(ctx, t.src)
		if err != nil {
			return ev, err
		}
		if !slices.ContainsFunc(train.labels, inRange) {
			_, trainFeat, err := t.encodeRows(ctx, m, train.x, train.n)
			if err != nil {
				return ev, err
			}
			cfg := eval.DefaultProbeConfig()
			cfg.Seed = t.Cfg.Seed
			h := len(valFeat) / val.n
			if ev.LinearProbeAccuracy, err = eval.LinearProbe(trainFeat, train.labels, valFeat, val.labels, h, nClasses, cfg); err != nil {
				return ev, fmt.Errorf("linear probe: %w", err)
			}
		}
	}
	labelled = labelled && len(classes) == nClasses // zero-shot needs the names
	if m.Text == nil {
		_, ev.Uniformity = eval.AlignmentUniformity(valEmb, valEmb, val.n, d)
		if err := t.evaluateEpisodes(ctx, m, val, valEmb, min(val.n, maxVLARows), &ev); err != nil {
			return ev, err
		}
		return ev, nil
	}
	if labelled {
		// Zero-shot: each class's captions through every template,
		// averaged and renormalised.
		c := t.captioner
		if c == nil {
			var templates []string
			if f := t.Cfg.DataOptions.Templates; f != "" {
				if templates, err = dataset.ReadTemplates(f); err != nil {
					return ev, err
				}
			}
			c = dataset.NewTemplateCaptioner(classes, templates)
		}
		nT := c.NumTemplates()
		prompts := make([]string, 0, len(classes)*nT)
		for k := range classes {
			for j := range nT {
				prompts = append(prompts, c.Text(k, j))
			}
		}
		templ, err := t.encodeTexts(m, prompts)
		if err != nil {
			return ev, fmt.Errorf("zero-shot prompts: %w", err)
		}
		class := make([]T, len(classes)*d)
		eval.ClassEmbeddings(templ, len(classes), nT, d, class)
		top1, top5 := eval.ZeroShot(valEmb, val.n, d, val.labels, class, len(classes))
		ev.ZeroShotTop1, ev.ZeroShotTop5 = &top1, &top5
	}
	if slices.Contains(val.texts, "") {
		_, ev.Uniformity = eval.AlignmentUniformity(valEmb, valEmb, val.n, d)
		return ev, nil
	}
	if m.Action != nil {
		if err := t.evaluateVLA(ctx, m, val, valEmb, &ev); err != nil {
			return ev, err
		}
	} else if err := t.evaluateEpisodes(ctx, m, val, valEmb, min(val.n, maxVLARows), &ev); err != nil {
		return ev, err
	}
	// Retrieval: each validation image against its own caption. Without
	// labels every sample is its own class.
	txt, err := t.encodeTexts(m, val.texts)
	if err != nil {
		return ev, fmt.Errorf("retrieval captions: %w", err)
	}
	groups := val.labels
	if !labelled {
		groups = make([]int, val.n)
		for i := range groups {
			groups[i] = i
		}
	}
	r := eval.Retrieval(valEmb, txt, val.n, d, groups)
	ev.RecallI2TAt1, ev.RecallI2TAt5, ev.RecallI2TAt10 = &r.I2T.R1, &r.I2T.R5, &r.I2T.R10
	ev.RecallT2IAt1, ev.RecallT2IAt5, ev.RecallT2IAt10 = &r.T2I.R1, &r.T2I.R5, &r.T2I.R10
	ev.MeanRankI2T, ev.MedianRankI2T = &r.I2T.MeanRank, &r.I2T.MedianRank
	ev.MeanRankT2I, ev.MedianRankT2I = &r.T2I.MeanRank, &r.T2I.MedianRank
	ev.ClassRecallI2T, ev.ClassRecallT2I = &r.ClassR1I2T, &r.ClassR1T2I
	align, uniform := eval.AlignmentUniformity(valEmb, txt, val.n, d)
	ev.Alignment, ev.Uniformity = &align, uniform
	return ev, nil
}

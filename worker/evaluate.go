package worker

import (
	"context"
	"fmt"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/eval"
	"github.com/infonce/infonce/model"
	"github.com/infonce/infonce/rundir"
)

// Evaluation is the quality report of a model on the data set's test split.
// Accuracies and recalls are fractions in [0, 1]; fields that do not apply
// to an objective (zero-shot without a text tower) are nil. Its fields are
// summary.json's (rundir.Evaluation).
type Evaluation = rundir.Evaluation

// evalBatch is the number of rows encoded at once during evaluation.
const evalBatch = 1000

// Evaluate scores the model with weights w on the test split: zero-shot
// classification with prompt ensembling and retrieval (when there is a text
// tower), the linear probe on the image tower's last hidden features against
// the same probe on raw pixels, and alignment and uniformity. It runs on a
// copy of the architecture over w, so the training caches are untouched.
func (t *Trainer[T]) Evaluate(ctx context.Context) (Evaluation, error) {
	var ev Evaluation
	m, err := model.NewWithParams[T](t.Model.Cfg, t.Model.P.W)
	if err != nil {
		return ev, fmt.Errorf("evaluation model: %w", err)
	}
	d := t.Cfg.Dim
	test, train := t.Set.Test, t.Set.Train
	testEmb, testFeat, err := t.encodeImages(ctx, m, test)
	if err != nil {
		return ev, err
	}
	_, trainFeat, err := t.encodeImages(ctx, m, train)
	if err != nil {
		return ev, err
	}
	testY, trainY := labels(test), labels(train)
	C := len(t.Set.Classes)
	h := len(testFeat) / test.N

	cfgProbe := eval.DefaultProbeConfig()
	cfgProbe.Seed = t.Cfg.Seed
	ev.LinearProbeAccuracy, err = eval.LinearProbe(trainFeat, trainY, testFeat, testY, h, C, cfgProbe)
	if err != nil {
		return ev, fmt.Errorf("linear probe: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return ev, err
	}
	trainFeat, testFeat = nil, nil // no longer needed: let the pixel probe reuse the memory
	P := train.H * train.W
	ev.PixelProbeAccuracy, err = eval.LinearProbeBytes(train.Pixels, trainY, test.Pixels, testY, P, C, cfgProbe)
	if err != nil {
		return ev, fmt.Errorf("pixel probe: %w", err)
	}

	if m.Text == nil {
		_, ev.Uniformity = eval.AlignmentUniformity(testEmb, testEmb, test.N, d)
		return ev, nil
	}
	// Zero-shot: every class's templates, averaged and renormalised.
	nT := t.captioner.NumTemplates()
	var ids, offsets []int32
	for c := 0; c < C; c++ {
		for j := 0; j < nT; j++ {
			offsets = append(offsets, int32(len(ids)))
			ids = append(ids, t.tokens[c*nT+j]...)
		}
	}
	templ, err := m.Text.Forward(model.Bags[T](ids, offsets, C*nT))
	if err != nil {
		return ev, fmt.Errorf("zero-shot prompts: %w", err)
	}
	class := make([]T, C*d)
	eval.ClassEmbeddings(templ, C, nT, d, class)
	top1, top5 := eval.ZeroShot(testEmb, test.N, d, testY, class, C)
	ev.ZeroShotTop1, ev.ZeroShotTop5 = &top1, &top5

	// Retrieval: test image i against its own caption, one template per
	// image drawn as in training (epoch -1 marks the test split).
	txt := make([]T, test.N*d)
	for lo := 0; lo < test.N; lo += evalBatch {
		hi := min(lo+evalBatch, test.N)
		ids, offsets = ids[:0], offsets[:0]
		for i := lo; i < hi; i++ {
			j := t.captioner.Pick(t.Cfg.Seed, -1, i)
			offsets = append(offsets, int32(len(ids)))
			ids = append(ids, t.tokens[testY[i]*nT+j]...)
		}
		v, err := m.Text.Forward(model.Bags[T](ids, offsets, hi-lo))
		if err != nil {
			return ev, fmt.Errorf("retrieval captions: %w", err)
		}
		copy(txt[lo*d:hi*d], v)
	}
	r := eval.Retrieval(testEmb, txt, test.N, d, testY)
	ev.RecallI2TAt1, ev.RecallI2TAt5, ev.RecallI2TAt10 = &r.I2T.R1, &r.I2T.R5, &r.I2T.R10
	ev.RecallT2IAt1, ev.RecallT2IAt5, ev.RecallT2IAt10 = &r.T2I.R1, &r.T2I.R5, &r.T2I.R10
	ev.MeanRankI2T, ev.MedianRankI2T = &r.I2T.MeanRank, &r.I2T.MedianRank
	ev.MeanRankT2I, ev.MedianRankT2I = &r.T2I.MeanRank, &r.T2I.MedianRank
	ev.ClassRecallI2T, ev.ClassRecallT2I = &r.ClassR1I2T, &r.ClassR1T2I
	align, uniform := eval.AlignmentUniformity(testEmb, txt, test.N, d)
	ev.Alignment, ev.Uniformity = &align, uniform
	return ev, nil
}

// encodeImages returns the L2-normalised embeddings (n×d) and the last
// hidden features (n×h) of every image of the split.
func (t *Trainer[T]) encodeImages(ctx context.Context, m *model.Model[T], split dataset.Images) (emb, feat []T, err error) {
	P := split.H * split.W
	d := t.Cfg.Dim
	x := make([]T, evalBatch*P)
	emb = make([]T, split.N*d)
	for lo := 0; lo < split.N; lo += evalBatch {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		hi := min(lo+evalBatch, split.N)
		dataset.Pixels(split.Pixels[lo*P:hi*P], x[:(hi-lo)*P])
		e, err := m.Image.Forward(model.Rows(x[:(hi-lo)*P], hi-lo))
		if err != nil {
			return nil, nil, fmt.Errorf("encode images %d..%d: %w", lo, hi, err)
		}
		copy(emb[lo*d:hi*d], e)
		f := m.Image.Features()
		if feat == nil {
			feat = make([]T, split.N*(len(f)/(hi-lo)))
		}
		h := len(f) / (hi - lo)
		copy(feat[lo*h:hi*h], f)
	}
	return emb, feat, nil
}

func labels(split dataset.Images) []int {
	y := make([]int, split.N)
	for i, l := range split.Labels {
		y[i] = int(l)
	}
	return y
}

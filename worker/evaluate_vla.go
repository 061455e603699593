package worker

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/infonce/infonce/eval"
	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/model"
)

// maxVLARows bounds the validation rows of the action and instruction
// retrieval, whose cost grows with their square.
const maxVLARows = 2000

// evaluateVLA scores the retrieval of actions and instructions on the
// validation rows (their first maxVLARows): the fused query of an image u
// and its instruction v (the model's fusion head f(u, v) when it has one,
// else (u+v)/‖u+v‖; see observations), against the embeddings w of every
// row's action chunk (the hit is the row's own chunk); and the fused
// (u+w)/‖u+w‖ against every distinct instruction (the hit is the row's).
// The action chunks of the validation data are normalised with the
// training data's quantiles. It also fits the ridge probe of the actions
// (actionRegression), scores the recognition of the task family when the
// data has a tasks.json (evaluateTasks), measures the temporal consistency
// of each episode's frames, and keeps the R@k curves and the PCA of the
// image embeddings for vla_eval.json (ev.VLAPlots).
func (t *Trainer[T]) evaluateVLA(ctx context.Context, m *model.Model[T], val *evalSet[T], u []T, ev *Evaluation) error {
	d := t.Cfg.Dim
	n := min(val.n, maxVLARows)
	vt, err := newActionTable(t.Data.Val, t.actions.H, t.actions.S > 0, func(error) {})
	if err != nil {
		return fmt.Errorf("validation actions: %w", err)
	}
	if vt.A != t.actions.A {
		return fmt.Errorf("validation actions have %d dimensions, training %d", vt.A, t.actions.A)
	}
	if vt.S != t.actions.S {
		return fmt.Errorf("validation states have %d dimensions, training %d", vt.S, t.actions.S)
	}
	vt.useStats(t.actions)
	rowLen := vt.rowLen()
	xa := make([]T, n*rowLen)
	row := make([]float32, rowLen)
	for r := range n {
		vt.fill(val.index[r], row)
		for j, v := range row {
			xa[r*rowLen+j] = T(v)
		}
	}
	w := make([]T, n*d)
	for lo := 0; lo < n; lo += evalBatch {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(lo+evalBatch, n)
		e, err := m.Action.Forward(model.Rows(xa[lo*rowLen:hi*rowLen], hi-lo))
		if err != nil {
			return fmt.Errorf("encode action chunks: %w", err)
		}
		copy(w[lo*d:hi*d], e)
	}
	v, err := t.encodeTexts(m, val.texts[:n])
	if err != nil {
		return err
	}
	// Distinct instructions, and each row's.
	var texts []string
	target := make([]int, n)
	for r, s := range val.texts[:n] {
		k := slices.Index(texts, s)
		if k < 0 {
			k = len(texts)
			texts = append(texts, s)
		}
		target[r] = k
	}
	vs, err := t.encodeTexts(m, texts)
	if err != nil {
		return err
	}
	obs, err := observations(ctx, m, u[:n*d], v, d)
	if err != nil {
		return err
	}
	ranksA := ranks(obs, w, d, func(r int) int { return r })
	ranksI := ranks(fused(u[:n*d], w, d), vs, d, func(r int) int { return target[r] })
	at := func(rs []int, k int) *float64 {
		c := 0
		for _, r := range rs {
			if r <= k {
				c++
			}
		}
		f := float64(c) / float64(len(rs))
		return &f
	}
	ev.ActionRecallAt1, ev.ActionRecallAt5, ev.ActionRecallAt10 = at(ranksA, 1), at(ranksA, 5), at(ranksA, 10)
	med := medianRank(ranksA)
	ev.ActionMedianRank = &med
	ev.InstructionRecallAt1, ev.InstructionRecallAt5 = at(ranksI, 1), at(ranksI, 5)
	chance := float64(min(5, n)) / float64(n)
	ev.ActionChanceAt5 = &chance

	// The training samples of the probes: the first ones, as for the
	// linear probe of evaluateSources.
	train, err := t.readEvalSet(ctx, t.src)
	if err != nil {
		return err
	}
	tu, _, err := t.encodeRows(ctx, m, train.x, train.n)
	if err != nil {
		return err
	}
	if err := t.actionRegression(ctx, m, train, tu, val, vt, u, v, n, ev); err != nil {
		return err
	}
	families, err := t.taskFamilies()
	if err != nil {
		return err
	}
	valFam := make([]int, n)
	for r := range n {
		valFam[r] = -1
		if families != nil {
			valFam[r] = families.Family(val.tasks[r])
		}
	}
	if families != nil {
		if err := t.evaluateTasks(m, families, train, tu, val, u, ev); err != nil {
			return err
		}
	}
	if ev.VLAPlots, err = vlaPlots(ranksA, ranksI, u[:n*d], valFam, families, d); err != nil {
		return err
	}
	temporalConsistency(val, u, n, d, ev)
	return nil
}

// evaluateEpisodes scores what a model without an action tower can be
// asked of episode data (an image–text, image-only or time-contrastive run
// on robot data): the recognition of the task family when the data has a
// tasks.json (evaluateTasks; the probe alone without a text tower) and the
// temporal consistency of the frames of the first n validation rows.
func (t *Trainer[T]) evaluateEpisodes(ctx context.Context, m *model.Model[T], val *evalSet[T], u []T, n int, ev *Evaluation) error {
	if !slices.ContainsFunc(val.episodes[:n], func(e int64) bool { return e >= 0 }) {
		return nil
	}
	families, err := t.taskFamilies()
	if err != nil {
		return err
	}
	if families != nil {
		train, err := t.readEvalSet(ctx, t.src)
		if err != nil {
			return err
		}
		tu, _, err := t.encodeRows(ctx, m, train.x, train.n)
		if err != nil {
			return err
		}
		if err := t.evaluateTasks(m, families, train, tu, val, u, ev); err != nil {
			return err
		}
	}
	temporalConsistency(val, u, n, t.Cfg.Dim, ev)
	return nil
}

// temporalConsistency sets ev.TemporalKendallTau: within each episode of
// the first n rows, Kendall's τ between each frame's step and its
// embedding's closeness (u·u_last) to the episode's last frame, averaged
// over the episodes of at least 3 frames. A frame nearer the end should be
// nearer the last frame.
func temporalConsistency[T gemm.Float](val *evalSet[T], u []T, n, d int, ev *Evaluation) {
	byEp := map[int64][]int{}
	for r := range n {
		if ep := val.episodes[r]; ep >= 0 {
			byEp[ep] = append(byEp[ep], r)
		}
	}
	var tauSum float64
	var episodes int
	for _, rows := range byEp {
		if len(rows) < 3 {
			continue
		}
		last := rows[0]
		for _, r := range rows {
			if val.steps[r] > val.steps[last] {
				last = r
			}
		}
		steps, close := make([]float64, len(rows)), make([]float64, len(rows))
		for k, r := range rows {
			steps[k] = float64(val.steps[r])
			var dot float64
			for j := range d {
				dot += float64(u[r*d+j]) * float64(u[last*d+j])
			}
			close[k] = dot
		}
		if tau := eval.KendallTau(steps, close); !math.IsNaN(tau) {
			tauSum += tau
			episodes++
		}
	}
	if episodes > 0 {
		tau := tauSum / float64(episodes)
		ev.TemporalKendallTau = &tau
	}
}

// actionRegression fits a ridge probe from the fused (image, instruction)
// embeddings of the first training samples (train, their image embeddings
// tu) to their steps' normalised actions, and scores it on the validation
// rows (R² per dimension).
func (t *Trainer[T]) actionRegression(ctx context.Context, m *model.Model[T], train *evalSet[T], tu []T, val *evalSet[T], vt *actionTable, u, v []T, n int, ev *Evaluation) error {
	d, A := t.Cfg.Dim, t.actions.A
	tv, err := t.encodeTexts(m, train.texts)
	if err != nil {
		return err
	}
	targets := func(tab *actionTable, index []int, emb []T, rows int) ([]T, []float64) {
		row := make([]float32, tab.rowLen())
		var x []T
		var y []float64
		for r := range rows {
			tab.fill(index[r], row)
			if row[tab.H*A] == 0 { // no action at this step
				continue
			}
			x = append(x, emb[r*d:(r+1)*d]...)
			for _, a := range row[:A] {
				y = append(y, float64(a))
			}
		}
		return x, y
	}
	trObs, err := observations(ctx, m, tu[:train.n*d], tv, d)
	if err != nil {
		return err
	}
	teObs, err := observations(ctx, m, u[:n*d], v, d)
	if err != nil {
		return err
	}
	trX, trY := targets(t.actions, train.index, trObs, train.n)
	teX, teY := targets(vt, val.index, teObs, n)
	if len(trY) == 0 || len(teY) == 0 {
		return nil
	}
	r2, err := eval.RidgeR2(trX, trY, teX, teY, d, A, 1e-2)
	if err != nil {
		return fmt.Errorf("action regression: %w", err)
	}
	var sum float64
	var k int
	ev.ActionR2PerDim = make([]*float64, len(r2))
	for i, x := range r2 {
		if !math.IsNaN(x) {
			sum += x
			k++
			ev.ActionR2PerDim[i] = &r2[i]
		}
	}
	if k > 0 {
		mean := sum / float64(k)
		ev.ActionR2 = &mean
	}
	return nil
}

// observations returns the observation embeddings of images u and their
// instructions v (n×d each): the model's fusion head f(u, v) when it has
// one (a vla run, whose actions were trained against f), and the
// parameter-free (u+v)/‖u+v‖ of fused otherwise.
func observations[T gemm.Float](ctx context.Context, m *model.Model[T], u, v []T, d int) ([]T, error) {
	if m.Fusion == nil {
		return fused(u, v, d), nil
	}
	n := len(u) / d
	out := make([]T, n*d)
	for lo := 0; lo < n; lo += evalBatch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+evalBatch, n)
		f, err := m.Fusion.Forward(u[lo*d:hi*d], v[lo*d:hi*d], hi-lo)
		if err != nil {
			return nil, fmt.Errorf("fuse observations: %w", err)
		}
		copy(out[lo*d:hi*d], f)
	}
	return out, nil
}

// fused returns the unit vectors (a_i + b_i)/‖a_i + b_i‖ of two n×d sets.
func fused[T gemm.Float](a, b []T, d int) []T {
	out := make([]T, len(a))
	for i := 0; i < len(a); i += d {
		var ss float64
		for j := range d {
			x := float64(a[i+j]) + float64(b[i+j])
			out[i+j] = T(x)
			ss += x * x
		}
		inv := 1 / math.Max(math.Sqrt(ss), 1e-12)
		for j := range d {
			out[i+j] = T(float64(out[i+j]) * inv)
		}
	}
	return out
}

// ranks returns, for each query row r, the 1-based rank of key target(r)
// among all keys by dot product (ties counted against the hit).
func ranks[T gemm.Float](q, keys []T, d int, target func(int) int) []int {
	nq, nk := len(q)/d, len(keys)/d
	out := make([]int, nq)
	for r := range nq {
		dot := func(k int) float64 {
			var s float64
			for j := range d {
				s += float64(q[r*d+j]) * float64(keys[k*d+j])
			}
			return s
		}
		hit := dot(target(r))
		rank := 1
		for k := range nk {
			if k != target(r) && dot(k) >= hit {
				rank++
			}
		}
		out[r] = rank
	}
	return out
}

func medianRank(xs []int) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return math.NaN()
	}
	if len(s)%2 == 1 {
		return float64(s[len(s)/2])
	}
	return float64(s[len(s)/2-1]+s[len(s)/2]) / 2
}

package worker

import (
	"fmt"
	"math"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/eval"
	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/model"
	"github.com/infonce/infonce/rundir"
)

// recallCurveK is the largest k of the retrieval curves of vla_eval.json.
const recallCurveK = 50

// taskFamilies reads the task families of the run's data: the tasks.json
// (dataset.TasksFile) of the validation data, else of the training data;
// nil when neither has one.
func (t *Trainer[T]) taskFamilies() (*dataset.TaskFamilies, error) {
	for _, spec := range []string{t.Cfg.DataOptions.ValData, t.Cfg.Data} {
		if spec == "" {
			continue
		}
		f, path, err := dataset.FindTaskFamilies(spec)
		if err != nil {
			return nil, fmt.Errorf("task families: %w", err)
		}
		if f != nil {
			t.log.Info("task families", "file", path, "families", len(f.Families))
			return f, nil
		}
	}
	t.log.Info("no " + dataset.TasksFile + " beside the data: task recognition is not evaluated")
	return nil, nil
}

// evaluateTasks scores the recognition of the task family of the
// validation rows (image embeddings u) by taskRecognition; the probe
// trains on the training rows (image embeddings tu). Rows whose task has no
// family are left out; without two families on both sides nothing is
// scored. A model without a text tower gets the probe alone.
func (t *Trainer[T]) evaluateTasks(m *model.Model[T], families *dataset.TaskFamilies, train *evalSet[T], tu []T, val *evalSet[T], u []T, ev *Evaluation) error {
	d, C := t.Cfg.Dim, len(families.Families)
	known := func(e *evalSet[T], emb []T) ([]T, []int, int) {
		var x []T
		var y []int
		seen := map[int]bool{}
		for r := range e.n {
			if c := families.Family(e.tasks[r]); c >= 0 {
				x = append(x, emb[r*d:(r+1)*d]...)
				y = append(y, c)
				seen[c] = true
			}
		}
		return x, y, len(seen)
	}
	trX, trY, trC := known(train, tu)
	vaX, vaY, vaC := known(val, u)
	if trC < 2 || vaC < 1 {
		t.log.Info("task recognition is not evaluated: too few samples with a task family",
			"train_families", trC, "val_rows", len(vaY))
		return nil
	}
	if m.Text == nil { // an image-only model: the probe alone
		cfg := eval.DefaultProbeConfig()
		cfg.Seed = t.Cfg.Seed
		probe, err := eval.LinearProbe(trX, trY, vaX, vaY, d, C, cfg)
		if err != nil {
			return fmt.Errorf("task probe: %w", err)
		}
		ev.TaskProbeAccuracy = &probe
		return nil
	}
	var prompts []string
	counts := make([]int, C)
	for c, f := range families.Families {
		prompts = append(prompts, f.Prompts...)
		counts[c] = len(f.Prompts)
	}
	pe, err := t.encodeTexts(m, prompts)
	if err != nil {
		return fmt.Errorf("task prompts: %w", err)
	}
	zs, probe, err := taskRecognition(trX, trY, vaX, vaY, pe, counts, d, t.Cfg.Seed)
	if err != nil {
		return err
	}
	ev.TaskZeroShotTop1, ev.TaskProbeAccuracy = &zs, &probe
	return nil
}

// taskRecognition scores task-family recognition from image embeddings.
// Zero-shot: family c's embedding is CLIP's prompt ensemble of its
// counts[c] prompt embeddings (rows of prompts, family-major),
// w_c = Σ_t e_{c,t} / ‖Σ_t e_{c,t}‖ (eval.ClassEmbeddings), and a
// validation image x is given argmax_c ⟨x, w_c⟩; zeroShot is the fraction
// whose family it is. Probe: eval.LinearProbe of the family on the frozen
// embeddings, trained on (trainX, trainY), scored on (valX, valY).
func taskRecognition[T gemm.Float](trainX []T, trainY []int, valX []T, valY []int, prompts []T, counts []int, d int, seed uint64) (zeroShot, probe float64, err error) {
	C, total := len(counts), 0
	for _, k := range counts {
		if k < 1 {
			return 0, 0, fmt.Errorf("task recognition: a family with %d prompts", k)
		}
		total += k
	}
	if total*d != len(prompts) {
		return 0, 0, fmt.Errorf("task recognition: %d prompt values for %d prompts of %d dimensions", len(prompts), total, d)
	}
	class := make([]T, C*d)
	off := 0
	for c, k := range counts {
		eval.ClassEmbeddings(prompts[off*d:(off+k)*d], 1, k, d, class[c*d:(c+1)*d])
		off += k
	}
	zeroShot, _ = eval.ZeroShot(valX, len(valY), d, valY, class, C)
	cfg := eval.DefaultProbeConfig()
	cfg.Seed = seed
	if probe, err = eval.LinearProbe(trainX, trainY, valX, valY, d, C, cfg); err != nil {
		return 0, 0, fmt.Errorf("task probe: %w", err)
	}
	return zeroShot, probe, nil
}

// vlaPlots gathers what the report's VLA plots need: R@k for k = 1 … 50 (at
// most the number of rows) of the action and instruction retrievals from
// their ranks, and the projection of the validation image embeddings u
// (n×d) on their first two principal components, with each row's family
// (fam, −1 unknown) and the families' names.
func vlaPlots[T gemm.Float](ranksA, ranksI []int, u []T, fam []int, families *dataset.TaskFamilies, d int) (*rundir.VLAEval, error) {
	n := len(u) / d
	p := &rundir.VLAEval{}
	K := min(recallCurveK, n)
	for k := 1; k <= K; k++ {
		p.RecallAtK.K = append(p.RecallAtK.K, k)
	}
	p.RecallAtK.Action = eval.RecallCurve(ranksA, K)
	p.RecallAtK.Instruction = eval.RecallCurve(ranksI, K)
	if families != nil {
		p.PCA.Families = families.Names()
	}
	if n < 1 || d < 2 {
		return p, nil
	}
	proj, variance, err := eval.PCA(u, n, d, d)
	if err != nil {
		return nil, fmt.Errorf("vla plots: %w", err)
	}
	for _, v := range variance {
		p.PCA.Total += v
	}
	p.PCA.Variance = [2]float64{variance[0], variance[1]}
	p.PCA.X, p.PCA.Y = make([]float64, n), make([]float64, n)
	for i := range n {
		p.PCA.X[i], p.PCA.Y[i] = round6(proj[i*d]), round6(proj[i*d+1])
	}
	p.PCA.Family = fam
	return p, nil
}

// round6 keeps six significant decimals of a plotted coordinate.
func round6(x float64) float64 {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return x
	}
	s := math.Pow(10, 5-math.Floor(math.Log10(math.Abs(x))))
	return math.Round(x*s) / s
}

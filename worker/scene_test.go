package worker

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/synthvla"
)

// TestSceneNegatives trains the tri-modal objective with --scene-negatives
// on synth-vla episodes of two variants per scene: each batch holds the
// samples of a scene's two episodes together (the same image with
// another instruction and other actions), and 3 ranks give the loss and
// parameters of one process.
func TestSceneNegatives(t *testing.T) {
	sum, err := synthvla.Generate(context.Background(), synthvla.Options{Episodes: 8, Out: t.TempDir(), Seed: 2, Size: 16, ValFraction: -1, SceneVariants: 2, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	cfg := smallConfig(t, Tri)
	cfg.Data, cfg.SceneNegatives = sum.Splits[synthvla.Train].Spec, true
	cfg.DataOptions.ImageSize, cfg.Batch, cfg.ActionHorizon = 8, 24, 4
	cfg.ActionHidden = []int{12}
	data := loadData(t, cfg)
	const steps = 3
	rc := allreduce.Config{JobID: "scene"}
	one, want := stepOnRanksData(t, cfg, data, 1, steps, rc, func(*allreduce.Ring) Comm[float64] { return Single[float64]{} })
	got, loss := stepOnRanksData(t, cfg, data, 3, steps, rc, func(r *allreduce.Ring) Comm[float64] { return ring64{r} })
	for s := range want {
		if math.IsNaN(want[s]) || math.Abs(loss[s]-want[s])/math.Abs(want[s]) > 1e-10 {
			t.Errorf("step %d: loss %v, single process %v", s, loss[s], want[s])
		}
	}
	for k, tr := range got {
		if d := relDiff(tr.Model.P.W, one[0].Model.P.W); d > 1e-10 {
			t.Errorf("rank %d: parameters differ by %.2g relative", k, d)
		}
	}
	// The batches: almost every sample with its sibling (the sample of the
	// scene's other episode at the same phase), against about B/N of them
	// in the batches of the plain sampler.
	src := one[0].src
	scene, episode, step, err := readScenes(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	bundles := dataset.SceneBundles(scene, episode, step)
	fraction := func(s *dataset.Sampler) float64 {
		with, all := 0, 0
		for st := range 2 * int64(s.StepsPerEpoch()) {
			_, idx := s.Batch(st, nil)
			for _, i := range idx {
				all++
				if slices.ContainsFunc(idx, func(j int) bool { return bundles[j] == bundles[i] && episode[j] != episode[i] }) {
					with++
				}
			}
		}
		return float64(with) / float64(all)
	}
	f, base := fraction(&one[0].Sampler), fraction(&dataset.Sampler{Seed: cfg.Seed, N: src.Len(), B: cfg.Batch})
	t.Logf("samples with their sibling in their batch: %.3f; %.3f without --scene-negatives (B/N = %.3f)", f, base, float64(cfg.Batch)/float64(src.Len()))
	if f < 0.9 || base > 0.5 {
		t.Errorf("samples with their sibling in their batch: %.3f, and %.3f without --scene-negatives", f, base)
	}
}

// TestSceneNegativesRefused: data without scene ids refuses the flag.
func TestSceneNegativesRefused(t *testing.T) {
	cfg := smallConfig(t, Tri)
	cfg.Data, cfg.SceneNegatives = writeEpisodes(t, t.TempDir(), 4), true
	cfg.DataOptions.ImageSize, cfg.Batch, cfg.ActionHorizon = 8, 8, 4
	if _, err := NewTrainerData[float64](cfg, loadData(t, cfg), nil); err == nil || !strings.Contains(err.Error(), "--scene-negatives") || !strings.Contains(err.Error(), "scene") {
		t.Errorf("episodes without scenes: %v, want a refusal of --scene-negatives", err)
	}
	cfg = smallConfig(t, "clip")
	cfg.SceneNegatives = true
	if _, err := NewTrainerData[float64](cfg, loadData(t, cfg), nil); err == nil || !strings.Contains(err.Error(), "--scene-negatives") {
		t.Errorf("an image set: %v, want a refusal of --scene-negatives", err)
	}
}

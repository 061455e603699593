package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/infonce/infonce/dataset"
)

// bundleScenes reads every sample's scene, episode and step and sets the
// sampler's bundles (dataset.SceneBundles), so that the samples of one
// scene's episodes share global batches (--scene-negatives). A source
// without scene ids is refused.
func (t *Trainer[T]) bundleScenes() error {
	cfg := t.Cfg
	if t.Set != nil {
		return fmt.Errorf("--scene-negatives: --data %s has no scenes: use episodes with scene ids (infonce data synth-vla --scene-variants 2 or more)", cfg.Data)
	}
	scene, episode, step, err := readScenes(context.Background(), t.src)
	if err != nil {
		return fmt.Errorf("--scene-negatives: --data %s: %w", cfg.Data, err)
	}
	t.Sampler.Bundles = dataset.SceneBundles(scene, episode, step)
	if err := t.Sampler.Validate(); err != nil {
		return fmt.Errorf("--scene-negatives: %w", err)
	}
	return nil
}

// readScenes reads the scene, episode and step of every sample of src (−1
// for a bad sample, which training counts when it reads it). It fails when
// no sample names a scene.
func readScenes(ctx context.Context, src dataset.Source) (scene, episode []int64, step []int, err error) {
	n := src.Len()
	scene, episode, step = make([]int64, n), make([]int64, n), make([]int, n)
	var s dataset.Sample
	named := 0
	for i := range n {
		err := src.Sample(ctx, i, &s)
		if err != nil && !errors.Is(err, dataset.ErrBadSample) {
			return nil, nil, nil, fmt.Errorf("scenes: sample %d: %w", i, err)
		}
		if err != nil {
			scene[i], episode[i] = -1, -1
			continue
		}
		scene[i], episode[i], step[i] = s.Scene, s.Episode, s.Step
		if s.Scene >= 0 && s.Episode >= 0 {
			named++
		}
	}
	if named == 0 {
		return nil, nil, nil, fmt.Errorf("no sample of %s names its scene and episode (a scene id in the metadata, as infonce data synth-vla --scene-variants 2 or more writes)", src.Name())
	}
	return scene, episode, step, nil
}

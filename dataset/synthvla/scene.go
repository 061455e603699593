package synthvla

import (
	"fmt"
	"slices"
)

// MaxVariants bounds the episodes of one scene (Options.SceneVariants):
// every scene of two objects has more distinct feasible tasks than that.
const MaxVariants = 8

// variantWord keys the random source of a scene's variants apart from the
// scenes' own (newRNG(seed, split, scene)).
const variantWord = 0x76617269616e74 // "variant"

// NewSceneEpisode generates variant v (0 ≤ v < variants) of scene scene of
// split sp, the episode of index scene·variants + v. Variant 0 is
// NewEpisode(seed, sp, scene): the scene (objects, their poses, the hand's
// start, the look) and its task. Variant v > 0 starts from the same scene,
// so that its first frame is the same image, and carries out another task:
// one drawn from (seed, sp, scene, v), distinct from the tasks and
// instructions of variants 0 … v−1, feasible on the scene (the plan fits
// the table), and in the validation split naming a HeldOut combination as
// X or Y. An episode does not depend on variants beyond its index, so the
// first episodes of a scene are the same for every number of variants.
func NewSceneEpisode(seed uint64, sp Split, scene, v, variants, size int) (*Episode, error) {
	switch {
	case size < 8:
		return nil, fmt.Errorf("synthvla: image side %d: want at least 8", size)
	case variants < 1 || variants > MaxVariants:
		return nil, fmt.Errorf("synthvla: %d variants per scene: want 1 to %d", variants, MaxVariants)
	case v < 0 || v >= variants:
		return nil, fmt.Errorf("synthvla: variant %d of %d", v, variants)
	}
	e0, err := drawEpisode(seed, sp, scene)
	if err != nil {
		return nil, err
	}
	eps := []*Episode{e0}
	for w := 1; w <= v; w++ {
		e, err := drawVariant(seed, sp, scene, w, eps)
		if err != nil {
			return nil, err
		}
		eps = append(eps, e)
	}
	e := eps[v]
	e.Index, e.Scene, e.Variants = scene*variants+v, scene, variants
	e.render(size)
	return e, nil
}

// drawVariant draws variant w of a scene whose variants 0 … w−1 are prev
// (unrendered): a task on prev[0]'s first scene, distinct from theirs.
func drawVariant(seed uint64, sp Split, scene, w int, prev []*Episode) (*Episode, error) {
	r := newRNG(seed, sp.word(), uint64(scene), variantWord, uint64(w))
	s0 := prev[0].Initial()
	n := len(s0.Objects)
	for range maxAttempts {
		f := Family(r.intn(NumFamilies))
		xi, yi := r.intn(n), -1
		if f.HasY() {
			if yi = r.intn(n - 1); yi >= xi {
				yi++
			}
		}
		t := Task{Family: f, X: s0.Objects[xi].Kind}
		if yi >= 0 {
			t.Y = s0.Objects[yi].Kind
		}
		switch {
		case f == Rotate && t.X.Shape.Period() == 0:
			continue // a turn of a circle does not show
		case sp == Val && !IsHeldOut(t.X) && (yi < 0 || !IsHeldOut(t.Y)):
			continue // every validation instruction names a held-out kind
		case slices.ContainsFunc(prev, func(p *Episode) bool { return p.Task.ID() == t.ID() }):
			continue
		}
		e, ok := runTask(r, sp, s0.Clone(), t, xi, yi)
		if !ok {
			continue
		}
		if !t.Holds(e.Initial(), e.Final(), xi, yi) {
			return nil, fmt.Errorf("%w: %s scene %d variant %d (seed %d): %s", ErrController, sp, scene, w, seed, t)
		}
		e.Instruction = t.Instruction(r)
		if slices.ContainsFunc(prev, func(p *Episode) bool { return p.Instruction == e.Instruction }) {
			continue
		}
		e.Look = prev[0].Look
		return e, nil
	}
	return nil, fmt.Errorf("synthvla: %s scene %d (seed %d): no distinct task fits for variant %d after %d draws", sp, scene, seed, w, maxAttempts)
}

package synthvla_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/synthvla"
)

// The variants of a scene start from one scene (the same first image)
// and carry out distinct tasks with distinct instructions, each completed;
// variant 0 is NewEpisode's episode, and a variant does not depend on the
// number of variants beyond it.
func TestSceneVariants(t *testing.T) {
	const seed, size, variants = 7, 24, 4
	scenes := 12
	if testing.Short() {
		scenes = 4
	}
	for _, sp := range []synthvla.Split{synthvla.Train, synthvla.Val} {
		for scene := range scenes {
			var eps []*synthvla.Episode
			for v := range variants {
				e, err := synthvla.NewSceneEpisode(seed, sp, scene, v, variants, size)
				if err != nil {
					t.Fatal(err)
				}
				if e.Index != scene*variants+v || e.Scene != scene {
					t.Fatalf("%s scene %d variant %d: index %d scene %d", sp, scene, v, e.Index, e.Scene)
				}
				if !e.Task.Holds(e.Initial(), e.Final(), e.XI, e.YI) {
					t.Errorf("%s scene %d variant %d: %s not done", sp, scene, v, e.Task)
				}
				if sp == synthvla.Val && !synthvla.IsHeldOut(e.Task.X) && (e.YI < 0 || !synthvla.IsHeldOut(e.Task.Y)) {
					t.Errorf("val scene %d variant %d: %s names no held-out kind", scene, v, e.Task)
				}
				for _, p := range eps {
					if !bytes.Equal(p.Frames[0].Image, e.Frames[0].Image) {
						t.Errorf("%s scene %d: variants %d and %d start from different images", sp, scene, p.Index, e.Index)
					}
					if p.Task.ID() == e.Task.ID() || p.Instruction == e.Instruction {
						t.Errorf("%s scene %d: variants %d and %d share task %s or instruction %q", sp, scene, p.Index, e.Index, e.Task, e.Instruction)
					}
				}
				eps = append(eps, e)
			}
			one, err := synthvla.NewEpisode(seed, sp, scene, size)
			if err != nil {
				t.Fatal(err)
			}
			same := one.Instruction == eps[0].Instruction && len(one.Frames) == len(eps[0].Frames)
			for i := range one.Frames {
				same = same && bytes.Equal(one.Frames[i].Image, eps[0].Frames[i].Image) && one.Frames[i].Action == eps[0].Frames[i].Action
			}
			if !same {
				t.Errorf("%s scene %d: variant 0 is not NewEpisode's episode", sp, scene)
			}
			fewer, err := synthvla.NewSceneEpisode(seed, sp, scene, 2, 3, size)
			if err != nil {
				t.Fatal(err)
			}
			if fewer.Instruction != eps[2].Instruction || !bytes.Equal(fewer.Frames[len(fewer.Frames)-1].Image, eps[2].Frames[len(eps[2].Frames)-1].Image) {
				t.Errorf("%s scene %d: variant 2 differs between 3 and 4 variants", sp, scene)
			}
		}
	}
	for _, c := range [][3]int{{0, 0, 9}, {0, 1, 1}, {0, -1, 2}} {
		if _, err := synthvla.NewSceneEpisode(seed, synthvla.Train, c[0], c[1], c[2], size); err == nil {
			t.Errorf("variant %d of %d accepted", c[1], c[2])
		}
	}
}

// Generate with two variants per scene: pairs of episodes whose first
// frames are the same image and whose instructions differ, the scene in
// the metadata, read back as Sample.Scene from both formats.
func TestSceneVariantsWritten(t *testing.T) {
	ctx := context.Background()
	for _, format := range []string{synthvla.FormatWDS, synthvla.FormatRLDS} {
		t.Run(format, func(t *testing.T) {
			s := generate(t, synthvla.Options{Episodes: 10, Seed: 3, Size: 16, Format: format, ValFraction: 0.2, SceneVariants: 2, EpisodesPerShard: 3})
			for _, sp := range []synthvla.Split{synthvla.Train, synthvla.Val} {
				src := open(t, s, sp)
				first := map[int64][]dataset.Sample{} // the first steps of each scene's episodes
				var smp dataset.Sample
				for i := range src.Len() {
					if err := src.Sample(ctx, i, &smp); err != nil {
						t.Fatal(err)
					}
					if smp.Scene != smp.Episode/2 || !smp.Has(dataset.FieldScene) {
						t.Fatalf("%s sample %d: scene %d of episode %d, want %d", sp, i, smp.Scene, smp.Episode, smp.Episode/2)
					}
					if smp.Step == 0 {
						c := smp
						c.Image.Pix = bytes.Clone(smp.Image.Pix)
						first[smp.Scene] = append(first[smp.Scene], c)
					}
				}
				if len(first) != s.Splits[sp].Episodes/2 {
					t.Fatalf("%s: %d scenes, want %d", sp, len(first), s.Splits[sp].Episodes/2)
				}
				for scene, f := range first {
					if len(f) != 2 {
						t.Fatalf("%s scene %d: %d episodes, want 2", sp, scene, len(f))
					}
					if !bytes.Equal(f[0].Image.Pix, f[1].Image.Pix) {
						t.Errorf("%s scene %d: the first frames differ", sp, scene)
					}
					if f[0].Text == f[1].Text {
						t.Errorf("%s scene %d: both episodes say %q", sp, scene, f[0].Text)
					}
				}
			}
		})
	}
	// One variant (the default) names no scene.
	s := generate(t, synthvla.Options{Episodes: 2, Seed: 3, Size: 16, ValFraction: -1})
	var smp dataset.Sample
	if err := open(t, s, synthvla.Train).Sample(ctx, 0, &smp); err != nil {
		t.Fatal(err)
	}
	if smp.Scene != -1 {
		t.Errorf("one variant per scene: sample of scene %d, want none", smp.Scene)
	}
	if _, err := synthvla.Generate(ctx, synthvla.Options{Episodes: 2, Out: t.TempDir(), SceneVariants: synthvla.MaxVariants + 1}); err == nil {
		t.Error("more than MaxVariants variants accepted")
	}
}

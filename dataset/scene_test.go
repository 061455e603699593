package dataset

import (
	"slices"
	"testing"
)

func TestSceneBundles(t *testing.T) {
	for _, c := range []struct {
		name    string
		scene   []int64
		episode []int64
		step    []int
		want    []int64
	}{
		{"equal lengths: step by step",
			[]int64{0, 0, 0, 0, 0, 0}, []int64{0, 0, 0, 1, 1, 1}, []int{0, 1, 2, 0, 1, 2},
			[]int64{0, 1, 2, 0, 1, 2}},
		{"a longer episode in proportion",
			[]int64{0, 0, 0, 0, 0, 0}, []int64{0, 0, 1, 1, 1, 1}, []int{0, 1, 0, 1, 2, 3},
			[]int64{0, 1, 0, 0, 1, 1}},
		{"steps out of order, two scenes, no scene",
			[]int64{3, 3, 7, 3, 3, -1, 7}, []int64{1, 1, 5, 2, 2, 9, 5}, []int{1, 0, 0, 0, 1, 0, 1},
			[]int64{0, 1, 2, 1, 0, -1, 3}},
		{"no episode", []int64{0, 0}, []int64{-1, 4}, []int{0, 0}, []int64{-1, 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := SceneBundles(c.scene, c.episode, c.step); !slices.Equal(got, c.want) {
				t.Errorf("bundles %v, want %v", got, c.want)
			}
		})
	}
}

// sceneData lays out scenes of v episodes of 5 to 14 steps each (drawn
// from seed), a sample per step, episodes one after the other.
func sceneData(scenes, v int, seed uint64) (scene, episode []int64, step []int) {
	r := newRNG(0x7363656e65 /* "scene" */, seed)
	for s := range scenes {
		for e := range v {
			for k := range 5 + r.intn(10) {
				scene = append(scene, int64(s))
				episode = append(episode, int64(s*v+e))
				step = append(step, k)
			}
		}
	}
	return scene, episode, step
}

// siblingFraction is the fraction of the samples of the epoch's windows
// that have a sibling (a sample of another episode of their scene at the
// same phase: of their bundle) in their window.
func siblingFraction(order []int, b int, bundles, episode []int64) float64 {
	with := 0
	for w := 0; w+b <= len(order); w += b {
		win := order[w : w+b]
		for _, i := range win {
			if slices.ContainsFunc(win, func(j int) bool { return bundles[j] == bundles[i] && episode[j] != episode[i] }) {
				with++
			}
		}
	}
	return float64(with) / float64(len(order))
}

func TestBundleOrder(t *testing.T) {
	scene, episode, step := sceneData(150, 2, 4)
	n := len(scene)
	bundles := SceneBundles(scene, episode, step)
	for _, b := range []int{8, 64, 100} {
		s := Sampler{Seed: 9, N: n, B: b, Bundles: bundles}
		plain := Sampler{Seed: 9, N: n, B: b}
		for epoch := range 2 {
			perm := Permutation(9, epoch, n, nil)
			order := BundleOrder(perm, bundles, b, nil)
			if want := (n / b) * b; len(order) != want {
				t.Fatalf("B=%d: %d samples ordered, want %d", b, len(order), want)
			}
			seen := make([]bool, n)
			for _, i := range order {
				if seen[i] {
					t.Fatalf("B=%d epoch %d: sample %d twice", b, epoch, i)
				}
				seen[i] = true
			}
			// The batches are the order's windows.
			spe := int64(s.StepsPerEpoch())
			var batches []int
			for w := range spe {
				_, idx := s.Batch(int64(epoch)*spe+w, nil)
				batches = append(batches, idx...)
			}
			if !slices.Equal(batches, order) {
				t.Fatalf("B=%d epoch %d: the sampler's batches are not BundleOrder's windows", b, epoch)
			}
			var base []int
			for w := range spe {
				_, idx := plain.Batch(int64(epoch)*spe+w, nil)
				base = append(base, idx...)
			}
			with, without := siblingFraction(order, b, bundles, episode), siblingFraction(base, b, bundles, episode)
			t.Logf("B=%d epoch %d: %.3f of the samples have a sibling in their batch, %.3f without bundles (B/N = %.3f)", b, epoch, with, without, float64(b)/float64(n))
			if with < 0.9 {
				t.Errorf("B=%d: only %.3f of the samples have a sibling in their batch", b, with)
			}
			if without > 3*float64(b)/float64(n) {
				t.Errorf("B=%d: %.3f of the samples have a sibling in their batch without bundles", b, without)
			}
		}
	}
	// When B divides N, every sample once per epoch.
	b := 0
	for d := 50; d > 1; d-- {
		if n%d == 0 {
			b = d
			break
		}
	}
	if b > 1 {
		order := BundleOrder(Permutation(1, 0, n, nil), bundles, b, nil)
		sorted := slices.Sorted(slices.Values(order))
		for i, v := range sorted {
			if v != i {
				t.Fatalf("B=%d divides N=%d, and sample %d is missing", b, n, i)
			}
		}
	}
	// A bundle larger than B is split; a pure function of its arguments.
	one := make([]int64, n)
	a := BundleOrder(Permutation(2, 0, n, nil), one, 16, nil)
	if len(a) != (n/16)*16 || !slices.Equal(a, BundleOrder(Permutation(2, 0, n, nil), one, 16, nil)) {
		t.Fatalf("one bundle of everything: %d samples ordered, want %d, deterministically", len(a), (n/16)*16)
	}
}

// TestBundleOrderCapped: with --max-per-episode as well, the cap holds in
// every batch and most siblings still share theirs.
func TestBundleOrderCapped(t *testing.T) {
	scene, episode, step := sceneData(100, 3, 5)
	n, b, limit := len(scene), 48, 2
	bundles := SceneBundles(scene, episode, step)
	s := Sampler{Seed: 1, N: n, B: b, Bundles: bundles, Groups: episode, MaxPerGroup: limit}
	seen := make([]bool, n)
	var order []int
	for w := range int64(s.StepsPerEpoch()) {
		_, idx := s.Batch(w, nil)
		count := map[int64]int{}
		for _, i := range idx {
			if seen[i] {
				t.Fatalf("step %d: sample %d twice in the epoch", w, i)
			}
			seen[i] = true
			if count[episode[i]]++; count[episode[i]] > limit {
				t.Fatalf("step %d: %d samples of episode %d, limit %d", w, count[episode[i]], episode[i], limit)
			}
		}
		order = append(order, idx...)
	}
	f := siblingFraction(order, b, bundles, episode)
	t.Logf("capped at %d per episode: %.3f of the samples have a sibling in their batch", limit, f)
	if f < 0.8 {
		t.Errorf("capped at %d per episode: only %.3f of the samples have a sibling in their batch", limit, f)
	}
}

// TestSceneBatchesIndependentOfK: the ranks' rows of a bundled batch are
// the batch, cut by Shard, whatever K.
func TestSceneBatchesIndependentOfK(t *testing.T) {
	scene, episode, step := sceneData(40, 2, 6)
	s := Sampler{Seed: 3, N: len(scene), B: 30, Bundles: SceneBundles(scene, episode, step)}
	for step := range int64(2 * s.StepsPerEpoch()) {
		_, want := s.Batch(step, nil)
		for K := 1; K <= 4; K++ {
			ranks := s // each rank its own copy, as each process has
			ranks.cache = nil
			_, idx := ranks.Batch(step, nil)
			var got []int
			for k := range K {
				lo, hi := Shard(len(idx), K, k)
				got = append(got, idx[lo:hi]...)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: K=%d ranks read %v, the global batch is %v", step, K, got, want)
			}
		}
	}
}

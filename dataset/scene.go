package dataset

import (
	"cmp"
	"slices"
)

// SceneBundles groups the samples of each scene's episodes by phase, so
// that a sample's siblings (the samples of other episodes of its scene at
// the same point of their episode) share its bundle: the bundles that
// BundleOrder keeps in one global batch, where the siblings are hard
// negatives of each other (the same first image, another instruction and
// other actions).
//
// scene, episode and step give each sample's scene (negative: none),
// episode (negative: none) and step. In a scene whose episodes hold
// L_1, …, L_m samples, with L = min L_e, the sample of rank p (by step) in
// its episode e has phase ⌊p·L/L_e⌋: episodes of equal length are matched
// step by step, and the steps of a longer episode are matched to the
// nearest step of the shortest in proportion to the episode's length, so
// that every bundle holds at least one sample of each episode of the
// scene (and at most ⌈L_e/L⌉ consecutive samples of episode e). The
// result gives each sample its bundle's id, numbered in order of the
// bundles' first samples, and −1 to a sample without scene or episode.
func SceneBundles(scene, episode []int64, step []int) []int64 {
	n := len(scene)
	type key struct{ scene, episode int64 }
	members := map[key][]int{}
	var keys []key
	for i := range n {
		if scene[i] < 0 || episode[i] < 0 {
			continue
		}
		k := key{scene[i], episode[i]}
		if _, ok := members[k]; !ok {
			keys = append(keys, k)
		}
		members[k] = append(members[k], i)
	}
	shortest := map[int64]int{} // L of each scene
	for _, k := range keys {
		m := members[k]
		slices.SortStableFunc(m, func(a, b int) int { return cmp.Compare(step[a], step[b]) })
		if l, ok := shortest[k.scene]; !ok || len(m) < l {
			shortest[k.scene] = len(m)
		}
	}
	phase := make([]int, n)
	for _, k := range keys {
		m, l := members[k], shortest[k.scene]
		for p, i := range m {
			phase[i] = p * l / len(m)
		}
	}
	type bundle struct {
		scene int64
		phase int
	}
	ids := map[bundle]int64{}
	out := make([]int64, n)
	for i := range n {
		out[i] = -1
		if scene[i] < 0 || episode[i] < 0 {
			continue
		}
		b := bundle{scene[i], phase[i]}
		id, ok := ids[b]
		if !ok {
			id = int64(len(ids))
			ids[b] = id
		}
		out[i] = id
	}
	return out
}

// bundleLookahead bounds the bundles BundleOrder looks past one that does
// not fit the room left in a window, for ones that do.
const bundleLookahead = 16

// BundleOrder reorders perm so that the samples of one bundle land in one
// of its consecutive windows of b. The bundles come in the order of their
// first sample in perm, their samples in perm's order (a sample of a
// negative bundle is a bundle of its own). The windows are filled in turn:
// a bundle that does not fit the room left in a window waits for the next
// one, while up to bundleLookahead later bundles that fit fill the room;
// when none fits, the waiting bundle is split, its first samples closing
// the window. Only the ⌊n/b⌋ full windows are returned (written to
// dst[:0]): every sample at most once. The result is a pure function of
// its arguments, so of (seed, epoch, n, b, bundles) for perm =
// Permutation(seed, epoch, n).
func BundleOrder(perm []int, bundles []int64, b int, dst []int) []int {
	n := len(perm)
	windows := n / b
	// The units: the bundles' members in perm's order, one after the
	// other in the order of their first sample.
	members := map[int64][]int{}
	for _, i := range perm {
		if g := bundles[i]; g >= 0 {
			members[g] = append(members[g], i)
		}
	}
	flat := make([]int, 0, n)
	emitted := map[int64]bool{}
	for _, i := range perm {
		switch g := bundles[i]; {
		case g < 0:
			flat = append(flat, i)
		case !emitted[g]:
			emitted[g] = true
			flat = append(flat, members[g]...)
		}
	}
	// A bundle's members are consecutive in flat.
	var units [][]int
	for start := 0; start < len(flat); {
		g, end := bundles[flat[start]], start+1
		for g >= 0 && end < len(flat) && bundles[flat[end]] == g {
			end++
		}
		units = append(units, flat[start:end])
		start = end
	}
	out := dst[:0]
	taken := make([]bool, len(units))
	next := 0
	for range windows {
		room := b
		for room > 0 && next < len(units) {
			if taken[next] {
				next++
				continue
			}
			u := units[next]
			if len(u) <= room {
				out = append(out, u...)
				room -= len(u)
				taken[next] = true
				next++
				continue
			}
			for j := next + 1; j < len(units) && j <= next+bundleLookahead && room > 0; j++ {
				if !taken[j] && len(units[j]) <= room {
					out = append(out, units[j]...)
					room -= len(units[j])
					taken[j] = true
				}
			}
			if room > 0 && room < len(u) { // split the waiting bundle
				out = append(out, u[:room]...)
				units[next] = u[room:]
				room = 0
			}
		}
	}
	return out
}

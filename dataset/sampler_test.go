package dataset

import (
	"slices"
	"strings"
	"testing"
)

func TestSamplerValidate(t *testing.T) {
	for _, tc := range []struct {
		s    Sampler
		want string // "" means valid
	}{
		{Sampler{N: 10, B: 10}, ""},
		{Sampler{N: 10, B: 1}, ""},
		{Sampler{N: 10, B: 0}, "--batch 0"},
		{Sampler{N: 10, B: -3}, "--batch -3"},
		{Sampler{N: 300, B: 512}, "--batch 512 is larger than the data set (300 samples): use --batch 300 or less"},
		{Sampler{N: 0, B: 1}, "empty"},
	} {
		err := tc.s.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.s, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.s, err, tc.want)
		}
	}
}

func TestSamplerEpoch(t *testing.T) {
	for _, tc := range []struct{ N, B int }{{10, 3}, {12, 4}, {7, 7}, {1000, 64}, {5, 1}} {
		s := Sampler{Seed: 9, N: tc.N, B: tc.B}
		spe := s.StepsPerEpoch()
		if spe != tc.N/tc.B {
			t.Fatalf("StepsPerEpoch = %d", spe)
		}
		for epoch := range 3 {
			seen := make(map[int]bool)
			for w := range spe {
				step := int64(epoch*spe + w)
				e, idx := s.Batch(step, nil)
				if e != epoch || len(idx) != tc.B {
					t.Fatalf("step %d: epoch %d, %d indices", step, e, len(idx))
				}
				for _, i := range idx {
					if i < 0 || i >= tc.N || seen[i] {
						t.Fatalf("N=%d B=%d epoch %d: index %d out of range or repeated", tc.N, tc.B, epoch, i)
					}
					seen[i] = true
				}
			}
			if len(seen) != spe*tc.B {
				t.Fatalf("epoch %d saw %d distinct indices, want %d", epoch, len(seen), spe*tc.B)
			}
		}
	}
}

func TestSamplerEpochsDiffer(t *testing.T) {
	s := Sampler{Seed: 1, N: 100, B: 100}
	_, a := s.Batch(0, nil)
	_, b := s.Batch(1, nil)
	if slices.Equal(a, b) {
		t.Fatal("epochs 0 and 1 have the same permutation")
	}
	s2 := Sampler{Seed: 2, N: 100, B: 100}
	if _, c := s2.Batch(0, nil); slices.Equal(a, c) {
		t.Fatal("seeds 1 and 2 give the same permutation")
	}
}

func TestSamplerDeterministic(t *testing.T) {
	a := Sampler{Seed: 77, N: 500, B: 32}
	b := Sampler{Seed: 77, N: 500, B: 32}
	// b is asked in a scrambled order (its cache switches epochs back and
	// forth); the answers must not depend on what was asked before.
	steps := []int64{0, 40, 1, 15, 16, 2, 100, 3, 15}
	var want [][]int
	for _, st := range steps {
		_, idx := a.Batch(st, nil)
		want = append(want, idx)
	}
	for i := len(steps) - 1; i >= 0; i-- {
		_, idx := b.Batch(steps[i], nil)
		if !slices.Equal(idx, want[i]) {
			t.Fatalf("step %d differs between calls", steps[i])
		}
		if !slices.Equal(idx, Permutation(77, int(steps[i]/15), 500, nil)[int(steps[i]%15)*32:][:32]) {
			t.Fatalf("step %d is not its window of the epoch permutation", steps[i])
		}
	}
	// A fresh copy of a used sampler gives the same batches.
	c := a
	_, x := c.Batch(7, nil)
	_, y := (&Sampler{Seed: 77, N: 500, B: 32}).Batch(7, nil)
	if !slices.Equal(x, y) {
		t.Fatal("a copied sampler differs")
	}
}

// TestShardIndependentOfK concatenates every rank's shard and checks it is
// the global batch, for several K, and that shard sizes differ by at most
// one with the larger ones first.
func TestShardIndependentOfK(t *testing.T) {
	s := Sampler{Seed: 5, N: 103, B: 17}
	for step := range int64(20) {
		_, global := s.Batch(step, nil)
		for K := 1; K <= 20; K++ {
			var cat []int
			counts := Counts(s.B, K)
			for k := range K {
				lo, hi := Shard(s.B, K, k)
				if hi-lo != counts[k] {
					t.Fatalf("Counts and Shard disagree")
				}
				if hi-lo != s.B/K && hi-lo != s.B/K+1 || (k > 0 && counts[k] > counts[k-1]) {
					t.Fatalf("B=%d K=%d: counts %v", s.B, K, counts)
				}
				// Each rank computes the batch itself.
				r := Sampler{Seed: 5, N: 103, B: 17}
				_, mine := r.Batch(step, nil)
				cat = append(cat, mine[lo:hi]...)
			}
			if !slices.Equal(cat, global) {
				t.Fatalf("step %d K=%d: concatenated shards %v != global %v", step, K, cat, global)
			}
		}
	}
}

// TestChangeOfKMidEpoch lets the world size change at every step and checks
// that, over an epoch, every index the epoch uses is seen exactly once.
func TestChangeOfKMidEpoch(t *testing.T) {
	s := Sampler{Seed: 11, N: 250, B: 24}
	spe := s.StepsPerEpoch()
	worlds := []int{4, 4, 3, 7, 1, 2, 2, 5, 24, 30}
	for epoch := range 2 {
		seen := make(map[int]int)
		for w := range spe {
			step := int64(epoch*spe + w)
			K := worlds[w%len(worlds)]
			ranks := make([]Sampler, K) // every rank has its own sampler
			for k := range K {
				ranks[k] = Sampler{Seed: 11, N: 250, B: 24}
				_, idx := ranks[k].Batch(step, nil)
				lo, hi := Shard(s.B, K, k)
				for _, i := range idx[lo:hi] {
					seen[i]++
				}
			}
		}
		if len(seen) != spe*s.B {
			t.Fatalf("epoch %d: %d distinct indices, want %d", epoch, len(seen), spe*s.B)
		}
		for i, n := range seen {
			if n != 1 {
				t.Fatalf("epoch %d: index %d seen %d times", epoch, i, n)
			}
		}
	}
}

func TestShardPanics(t *testing.T) {
	for _, a := range [][3]int{{-1, 1, 0}, {4, 0, 0}, {4, 2, 2}, {4, 2, -1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Shard%v did not panic", a)
				}
			}()
			Shard(a[0], a[1], a[2])
		}()
	}
	if c := Counts(2, 4); !slices.Equal(c, []int{1, 1, 0, 0}) {
		t.Errorf("Counts(2, 4) = %v", c)
	}
}

func TestBatchReusesDst(t *testing.T) {
	s := Sampler{Seed: 3, N: 1000, B: 50}
	dst := make([]int, 0, 50)
	s.Batch(0, dst) // fill the cache
	allocs := testing.AllocsPerRun(50, func() {
		_, dst = s.Batch(5, dst)
	})
	if allocs != 0 || cap(dst) != 50 {
		t.Errorf("Batch allocates %.1f times per step (cap %d)", allocs, cap(dst))
	}
}

func TestPermutationIsPermutation(t *testing.T) {
	for _, n := range []int{0, 1, 2, 13, 1000} {
		p := Permutation(1, 2, n, nil)
		q := slices.Clone(p)
		slices.Sort(q)
		for i := range q {
			if q[i] != i {
				t.Fatalf("n=%d: not a permutation", n)
			}
		}
	}
}

func BenchmarkBatch(b *testing.B) {
	s := Sampler{Seed: 3, N: 60000, B: 256}
	dst := make([]int, 0, 256)
	for i := 0; b.Loop(); i++ {
		_, dst = s.Batch(int64(i), dst)
	}
}

// TestPermutationUniform checks that every position of a 5-element
// permutation takes every value about equally often over many epochs.
func TestPermutationUniform(t *testing.T) {
	const n, epochs = 5, 5000
	var counts [n][n]int
	p := make([]int, n)
	for e := range epochs {
		p = Permutation(99, e, n, p)
		for pos, v := range p {
			counts[pos][v]++
		}
	}
	for pos := range n {
		for v := range n {
			if c := counts[pos][v]; c < epochs/n*85/100 || c > epochs/n*115/100 {
				t.Errorf("position %d holds %d in %d of %d epochs", pos, v, c, epochs)
			}
		}
	}
}

// TestPermutationStable pins one permutation: a run resumed from a
// checkpoint by a newer binary must see the same batches, so a change here
// is a breaking change of the sampler, not a detail.
func TestPermutationStable(t *testing.T) {
	got := Permutation(1, 0, 10, nil)
	if want := []int{6, 9, 2, 1, 3, 8, 7, 4, 5, 0}; !slices.Equal(got, want) {
		t.Fatalf("Permutation(1, 0, 10) = %v, want %v", got, want)
	}
}

// TestCappedOrder: every window holds at most the limit of one group, no
// sample appears twice in an epoch, and the order is a pure function of
// its arguments.
func TestCappedOrder(t *testing.T) {
	const n, b, limit = 200, 16, 2
	groups := make([]int64, n)
	for i := range groups {
		groups[i] = int64(i / 10) // episodes of 10 steps
	}
	groups[7] = -1
	s := Sampler{Seed: 3, N: n, B: b, Groups: groups, MaxPerGroup: limit}
	seen := map[int]bool{}
	for step := range int64(s.StepsPerEpoch()) {
		_, idx := s.Batch(step, nil)
		count := map[int64]int{}
		for _, i := range idx {
			if seen[i] {
				t.Fatalf("step %d: sample %d twice in the epoch", step, i)
			}
			seen[i] = true
			if g := groups[i]; g >= 0 {
				count[g]++
				if count[g] > limit {
					t.Fatalf("step %d: %d samples of episode %d, limit %d", step, count[g], g, limit)
				}
			}
		}
	}
	perm := Permutation(3, 0, n, nil)
	a, c := CappedOrder(perm, groups, b, limit, nil), CappedOrder(perm, groups, b, limit, nil)
	if !slices.Equal(a, c) {
		t.Fatal("CappedOrder is not deterministic")
	}
	// One group holding everything: the windows fill anyway.
	one := make([]int64, n)
	if got := CappedOrder(perm, one, b, limit, nil); len(got) != (n/b)*b {
		t.Fatalf("%d samples ordered, want %d", len(got), (n/b)*b)
	}
}

package dataset

import (
	"fmt"
	"sync"
)

// Sampler turns a global step into the indices of that step's global batch.
//
// Epoch e is a permutation π_e of {0, …, N-1} drawn from (Seed, e). It is cut
// into StepsPerEpoch = ⌊N/B⌋ consecutive windows of B; step t reads window
// t mod StepsPerEpoch of epoch ⌊t / StepsPerEpoch⌋, and the N mod B indices
// left at the end of a permutation are not used in that epoch. Rank k of K
// takes rows Shard(B, K, k) of the window. The sequence of global batches
// therefore depends only on (Seed, N, B), never on the number of ranks, and a
// change of K between two steps neither skips nor repeats a sample.
//
// The zero value of the unexported cache is ready; set Seed, N and B. A
// Sampler must not be used by several goroutines at once (copies may be).
type Sampler struct {
	Seed uint64
	N, B int // N samples, global batch B

	// Groups, when MaxPerGroup > 0, gives each sample's group (an episode
	// id; negative: a group of its own), and a global batch holds at most
	// MaxPerGroup samples of one group: see CappedOrder.
	Groups      []int64
	MaxPerGroup int

	// Bundles, when set (one per sample), keeps the samples of a bundle
	// (a non-negative id; negative: a bundle of its own) in one global
	// batch: the epoch's order is BundleOrder of π_e (see SceneBundles).
	// With MaxPerGroup as well the cap takes precedence: CappedOrder
	// reorders the bundled order, deferring a bundle's samples beyond the
	// cap to later batches.
	Bundles []int64

	cache *permCache
}

// permCache holds the permutation of the last epoch asked for, so that a
// step costs O(B) and only the first step of an epoch costs O(N).
type permCache struct {
	mu    sync.Mutex
	valid bool
	seed  uint64
	epoch int
	perm  []int
	order []int // the capped order of perm (Groups and MaxPerGroup set)
	// bundled is the bundled order of perm (Bundles set)
	bundled []int
}

// Validate reports whether the sampler can produce batches: 1 ≤ B ≤ N.
func (s Sampler) Validate() error {
	switch {
	case s.MaxPerGroup > 0 && len(s.Groups) != s.N:
		return fmt.Errorf("dataset: sampler: %d groups for %d samples", len(s.Groups), s.N)
	case s.Bundles != nil && len(s.Bundles) != s.N:
		return fmt.Errorf("dataset: sampler: %d bundles for %d samples", len(s.Bundles), s.N)
	case s.N < 1:
		return fmt.Errorf("dataset: sampler: the data set is empty (N = %d)", s.N)
	case s.B < 1:
		return fmt.Errorf("dataset: sampler: --batch %d: the global batch must be at least 1", s.B)
	case s.B > s.N:
		return fmt.Errorf("dataset: sampler: --batch %d is larger than the data set (%d samples): use --batch %d or less", s.B, s.N, s.N)
	}
	return nil
}

// StepsPerEpoch is ⌊N/B⌋, the number of full global batches in one epoch.
// It panics if the sampler is not valid (see Validate).
func (s Sampler) StepsPerEpoch() int {
	if err := s.Validate(); err != nil {
		panic(err)
	}
	return s.N / s.B
}

// Batch returns the epoch of global step step (≥ 0) and the B dataset
// indices of its global batch, π_epoch[w·B : (w+1)·B] with
// w = step mod StepsPerEpoch. The indices are written to dst[:0] (grown if
// it is too small) and returned. Batch panics on an invalid sampler or a
// negative step.
func (s *Sampler) Batch(step int64, dst []int) (epoch int, idx []int) {
	spe := int64(s.StepsPerEpoch())
	if step < 0 {
		panic(fmt.Sprintf("dataset: Sampler.Batch: negative step %d", step))
	}
	epoch = int(step / spe)
	w := int(step % spe)
	if s.cache == nil {
		s.cache = new(permCache)
	}
	c := s.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.valid || c.seed != s.Seed || c.epoch != epoch || len(c.perm) != s.N {
		c.perm = Permutation(s.Seed, epoch, s.N, c.perm)
		c.seed, c.epoch, c.valid = s.Seed, epoch, true
		src := c.perm
		if s.Bundles != nil {
			c.bundled = BundleOrder(c.perm, s.Bundles, s.B, c.bundled)
			src = c.bundled
		}
		if s.MaxPerGroup > 0 {
			c.order = CappedOrder(src, s.Groups, s.B, s.MaxPerGroup, c.order)
		}
	}
	order := c.perm
	switch {
	case s.MaxPerGroup > 0:
		order = c.order
	case s.Bundles != nil:
		order = c.bundled
	}
	return epoch, append(dst[:0], order[w*s.B:(w+1)*s.B]...)
}

// CappedOrder reorders perm so that each of its consecutive windows of b
// holds at most limit samples of one group: it fills the windows in turn,
// each first with the samples deferred from earlier windows (in order)
// and then from perm, deferring a sample whose group has limit samples in
// the window already. A sample of a negative group is a group of its own.
// When the data cannot fill ⌊n/b⌋ windows so (one episode holds most of
// it), the last windows take the deferred samples as they come. The
// result, written to dst[:0], is a pure function of its arguments.
func CappedOrder(perm []int, groups []int64, b, limit int, dst []int) []int {
	n := len(perm)
	windows := n / b
	out := dst[:0]
	var deferred []int
	count := map[int64]int{}
	next := 0
	fits := func(i int) bool { return groups[i] < 0 || count[groups[i]] < limit }
	take := func(i int) {
		out = append(out, i)
		if groups[i] >= 0 {
			count[groups[i]]++
		}
	}
	for w := 0; w < windows; w++ {
		clear(count)
		start := len(out)
		kept := deferred[:0:0]
		for _, i := range deferred {
			if len(out)-start < b && fits(i) {
				take(i)
			} else {
				kept = append(kept, i)
			}
		}
		deferred = kept
		for len(out)-start < b && next < n {
			i := perm[next]
			next++
			if fits(i) {
				take(i)
			} else {
				deferred = append(deferred, i)
			}
		}
		// The data ran out of samples that fit: fill the window anyway.
		for len(out)-start < b && len(deferred) > 0 {
			take(deferred[0])
			deferred = deferred[1:]
		}
	}
	return out
}

// Permutation writes the permutation π_epoch of {0, …, n-1} for seed into
// dst[:0] (grown if too small) and returns it: a Fisher–Yates shuffle driven
// by a PCG seeded from a hash of (seed, epoch). It is a pure function of
// its arguments and stable across Go releases.
func Permutation(seed uint64, epoch, n int, dst []int) []int {
	if cap(dst) < n {
		dst = make([]int, n)
	}
	p := dst[:n]
	for i := range p {
		p[i] = i
	}
	r := newRNG(domainPermutation, seed, uint64(epoch))
	for i := n - 1; i > 0; i-- {
		j := r.intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// Shard returns rank k's contiguous rows [lo, hi) of a global batch of B
// rows split over K ranks. Sizes differ by at most one: the first B mod K
// ranks get ⌊B/K⌋+1 rows, the others ⌊B/K⌋ (0 when K > B). It panics unless
// B ≥ 0, K ≥ 1 and 0 ≤ k < K.
func Shard(B, K, k int) (lo, hi int) {
	if B < 0 || K < 1 || k < 0 || k >= K {
		panic(fmt.Sprintf("dataset: Shard(B=%d, K=%d, k=%d): want B ≥ 0, K ≥ 1, 0 ≤ k < K", B, K, k))
	}
	q, r := B/K, B%K
	lo = k*q + min(k, r)
	hi = lo + q
	if k < r {
		hi++
	}
	return lo, hi
}

// Counts returns the number of rows of each of K ranks, hi-lo of Shard.
func Counts(B, K int) []int {
	c := make([]int, K)
	for k := range c {
		lo, hi := Shard(B, K, k)
		c[k] = hi - lo
	}
	return c
}

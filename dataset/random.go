package dataset

import (
	"math"
	"math/bits"
	"math/rand/v2"
)

// Domains keep the random streams of the package apart: the same (seed, …)
// key gives unrelated numbers to the sampler, the captions and the
// augmentations.
const (
	domainPermutation uint64 = 0x7065726d75746174 // "permutat"
	domainCaption     uint64 = 0x63617074696f6e73 // "captions"
	domainAugment     uint64 = 0x6175676d656e7473 // "augments"
)

// mix64 is the SplitMix64 finaliser, a bijection of 64-bit words that
// spreads every input bit over the output.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// hashKey absorbs the parts of a key, one word at a time, into two
// 64-bit words fit to seed a PCG.
func hashKey(domain uint64, parts ...uint64) (uint64, uint64) {
	h := mix64(domain + 0x9e3779b97f4a7c15)
	for _, p := range parts {
		h = mix64(h ^ p)
		h += 0x9e3779b97f4a7c15
	}
	return mix64(h), mix64(h ^ 0xd1b54a32d192ed03)
}

// rng is a small value-type random source: a PCG (math/rand/v2) with the
// conversions this package needs, written out here so that the streams do
// not depend on how a library derives floats or bounded integers.
type rng struct {
	pcg      rand.PCG
	spare    float64
	hasSpare bool
}

func newRNG(domain uint64, parts ...uint64) rng {
	a, b := hashKey(domain, parts...)
	var r rng
	r.pcg.Seed(a, b)
	return r
}

// uniform returns a float64 in [0, 1) with 53 random bits.
func (r *rng) uniform() float64 { return float64(r.pcg.Uint64()>>11) * 0x1p-53 }

// between returns a float64 uniform in [lo, hi) (lo when hi == lo).
func (r *rng) between(lo, hi float64) float64 { return lo + (hi-lo)*r.uniform() }

// intn returns an int uniform in [0, n) for n ≥ 1, without bias
// (Lemire's multiply-and-reject).
func (r *rng) intn(n int) int {
	un := uint64(n)
	hi, lo := bits.Mul64(r.pcg.Uint64(), un)
	if lo < un {
		thresh := -un % un
		for lo < thresh {
			hi, lo = bits.Mul64(r.pcg.Uint64(), un)
		}
	}
	return int(hi)
}

// normal returns a standard normal deviate (Box–Muller, the second value of
// each pair kept for the next call).
func (r *rng) normal() float64 {
	if r.hasSpare {
		r.hasSpare = false
		return r.spare
	}
	u1 := 1 - r.uniform() // (0, 1]
	u2 := r.uniform()
	rad := math.Sqrt(-2 * math.Log(u1))
	s, c := math.Sincos(2 * math.Pi * u2)
	r.spare, r.hasSpare = rad*s, true
	return rad * c
}

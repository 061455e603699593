package contrastive

import (
	"context"
	"math/rand/v2"
	"runtime"
	"testing"
	"unsafe"

	"github.com/infonce/infonce/gemm"
)

// coldCLIPBytes returns the bytes allocated, per rank, by the first CLIP
// step of a global batch B on K in-memory ranks (float32): the size of all
// work buffers, since later steps allocate nothing.
func coldCLIPBytes(t testing.TB, B, K, d, chunk int) (perRank, bound float64) {
	rng := rand.New(rand.NewPCG(52, uint64(B)))
	counts := make([]int, K)
	for r := range counts {
		counts[r] = B / K
		if r < B%K {
			counts[r]++
		}
	}
	off := offsets(counts)
	u := conv[float32](unitRows(rng, B, d))
	v := conv[float32](unitRows(rng, B, d))
	objs := make([]CLIP[float32], K)
	ins := make([]CLIPInput[float32], K)
	for r := range K {
		objs[r].Chunk = chunk
		n := counts[r]
		ins[r] = CLIPInput[float32]{U: rows(u, off[r], off[r+1], d), V: rows(v, off[r], off[r+1], d), D: d,
			Counts: counts, Scale: 1 / 0.07, DU: make([]float32, n*d), DV: make([]float32, n*d)}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := runRanks(K, func(r int, coll Collective) error {
		_, err := objs[r].Compute(context.Background(), coll, ins[r])
		return err
	}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	var f float32
	b := (B + K - 1) / K
	// Gathered U and V (2·B·d), one b×Chunk tile, statistics
	// (b×2 local, 2×b×2 accumulators, B×2 gathered, b diagonal; float64).
	bound = float64((2*B*d+b*min(chunk, B))*int(unsafe.Sizeof(f)) + (7*b+2*B)*8)
	return float64(after.TotalAlloc-before.TotalAlloc) / float64(K), bound
}

// The working memory of a rank grows linearly with the global batch, as
// O((b+B)·d + b·Chunk), not with B² as a materialised logit matrix would.
//
// The measurement runs on gonum's kernel, which keeps no scratch of its
// own, so that the figure is the objective's memory and not a kernel's
// packing buffers (those are pooled, and the race detector empties pools).
func TestCLIPMemoryLinearInBatch(t *testing.T) {
	const K, d, chunk = 4, 32, 128
	defer gemm.Use(gemm.Use(gemm.Gonum{}))
	var prev float64
	for _, B := range []int{512, 1024, 2048} {
		got, bound := coldCLIPBytes(t, B, K, d, chunk)
		logits := float64(B) * float64(B) * 4
		t.Logf("B=%5d: %8.0f bytes/rank allocated, bound %8.0f, B² logits %10.0f", B, got, bound, logits)
		// A fixed allowance covers the in-memory collective's channels and
		// the matrix kernel's own scratch.
		if got > 1.25*bound+256<<10 {
			t.Errorf("B=%d: %.0f bytes per rank, more than the streaming bound %.0f", B, got, bound)
		}
		if prev > 0 && got > 2.5*prev {
			t.Errorf("B=%d: memory grew %.2f× when B doubled (linear: 2×, quadratic: 4×)", B, got/prev)
		}
		prev = got
	}
}

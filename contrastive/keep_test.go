package contrastive

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/infonce/infonce/gemm"
)

// When the global batch fits one chunk, CLIP keeps the blocks of S from the
// first pass to the second instead of computing them again. On every split
// of the batch over ranks, that path gives the loss and the gradients of
// the streaming path (chunks of 3 and 4 columns) of a single rank.
func TestCLIPKeptBlocksMatchStreaming(t *testing.T) {
	t.Run("float64", testCLIPKeptBlocks[float64])
	t.Run("float32", testCLIPKeptBlocks[float32])
}

func testCLIPKeptBlocks[T gemm.Float](t *testing.T) {
	const B, d = 10, 6
	rng := rand.New(rand.NewPCG(77, 0))
	u, v := conv[T](unitRows(rng, B, d)), conv[T](unitRows(rng, B, d))
	ids := []int32{3, 1, 3, 2, 7, 1, 4, 5, 6, 3}
	scale := T(1 / 0.07)
	run := func(counts []int, chunk int, mask bool) outcome {
		return distributed(t, counts, 2, d, func(r int, coll Collective, lo, hi int) (float64, float64, [][]float64, error) {
			c := CLIP[T]{Chunk: chunk, MaskFalseNegatives: mask}
			in := CLIPInput[T]{U: rows(u, lo, hi, d), V: rows(v, lo, hi, d), D: d, Counts: counts, Scale: scale,
				DU: make([]T, (hi-lo)*d), DV: make([]T, (hi-lo)*d)}
			if mask {
				in.IDs = ids[lo:hi]
			}
			var res Result[T]
			var err error
			for range 2 { // the second call runs on the buffers of the first
				if res, err = c.Compute(context.Background(), coll, in); err != nil {
					return 0, 0, nil, err
				}
			}
			return float64(res.Loss), float64(res.DT), [][]float64{to64(in.DU), to64(in.DV)}, nil
		})
	}
	for _, mask := range []bool{false, true} {
		for _, streamChunk := range []int{3, 4} {
			want := run([]int{B}, streamChunk, mask)
			for _, counts := range splits {
				for _, keepChunk := range []int{0, B} {
					t.Run(fmt.Sprintf("mask %v counts %v chunk %d vs %d", mask, counts, keepChunk, streamChunk), func(t *testing.T) {
						compare(t, run(counts, keepChunk, mask), want, tolerance[T]())
					})
				}
			}
		}
	}
}

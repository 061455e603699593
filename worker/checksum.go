package worker

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/infonce/infonce/allreduce"
)

// checkParams compares a checksum of the parameters across the ranks: the
// parameters of every rank must be bit-identical after every step. The
// checksum is xxHash64, about ten times faster than SHA-256 here: it
// guards against divergence, not against an adversary.
func checkParams(ctx context.Context, ring *allreduce.Ring, w []float32, step int64) error {
	var sum [8]byte
	binary.LittleEndian.PutUint64(sum[:], xxhash.Sum64(floatBytes(w)))
	K := ring.Size()
	counts := make([]int, K)
	for i := range counts {
		counts[i] = 8
	}
	all := make([]byte, 8*K)
	if err := ring.AllGather(ctx, sum[:8], all, counts); err != nil {
		return fmt.Errorf("parameter checksum: %w", err)
	}
	for r := 0; r < K; r++ {
		if !bytes.Equal(all[8*r:8*r+8], sum[:8]) {
			return fmt.Errorf("%w: after step %d the parameters of rank %d differ from rank %d's (checksum %x, here %x): the ranks diverged; restart from the last checkpoint",
				errFatal, step, r, ring.Rank(), all[8*r:8*r+8], sum[:8])
		}
	}
	return nil
}

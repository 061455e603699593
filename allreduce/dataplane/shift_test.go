package dataplane

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/infonce/infonce/allreduce"
)

// TestShift: one hop of a ring exchange over every transport, with blocks
// of different sizes per rank (one empty, one spanning several chunks):
// each rank receives its left neighbour's block, and K hops bring every
// block back to its owner.
func TestShift(t *testing.T) {
	for _, transport := range []string{"mem", allreduce.TransportTCP, allreduce.TransportGRPC, allreduce.TransportSHM} {
		for _, k := range []int{1, 2, 3, 4} {
			t.Run(fmt.Sprintf("%s/K=%d", transport, k), func(t *testing.T) {
				cfg := allreduce.Config{JobID: "shift", ChunkBytes: 64}
				var rings []*allreduce.Ring
				if transport == "mem" {
					var err error
					if rings, err = allreduce.NewMemRings(k, cfg); err != nil {
						t.Fatal(err)
					}
				} else {
					cfg.Transport = transport
					rings = netRings(t, k, cfg)
				}
				defer closeAll(rings)
				size := func(rank int) int { return []int{100, 0, 7, 300}[rank] }
				blocks := make([][]byte, k)
				for rank := range k {
					blocks[rank] = bytes.Repeat([]byte{byte(rank + 1)}, size(rank))
				}
				cur := make([][]byte, k)
				copy(cur, blocks)
				for hop := range k {
					next := make([][]byte, k)
					mustAll(t, onAll(rings, func(r *allreduce.Ring) error {
						me := r.Rank()
						left := (me + k - 1) % k
						next[me] = make([]byte, len(cur[left]))
						return r.Shift(context.Background(), cur[me], next[me])
					}))
					for rank := range k {
						if left := (rank + k - 1) % k; !bytes.Equal(next[rank], cur[left]) {
							t.Fatalf("hop %d: rank %d received %d bytes not its left neighbour's block", hop, rank, len(next[rank]))
						}
					}
					cur = next
				}
				for rank := range k {
					if !bytes.Equal(cur[rank], blocks[rank]) {
						t.Fatalf("after %d hops rank %d holds another block", k, rank)
					}
				}
			})
		}
	}
}

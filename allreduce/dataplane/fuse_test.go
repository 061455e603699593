package dataplane

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/infonce/infonce/allreduce"
)

func TestConcurrentBuckets(t *testing.T) {
	base := runtime.NumGoroutine()
	for _, kind := range transportKinds {
		t.Run(kind, func(t *testing.T) {
			const k = 3
			rings := makeRings(t, kind, k, allreduce.Config{JobID: "t", ChunkBytes: 1024})
			sizes := []int{5, 1000, 0, 3, 4096, 77}
			ctx := context.Background()
			mustAll(t, onAll(rings, func(r *allreduce.Ring) error {
				bufs := make([][]float32, len(sizes))
				pend := make([]*allreduce.Pending, len(sizes))
				for i, n := range sizes {
					bufs[i] = make([]float32, n)
					for j := range bufs[i] {
						bufs[i][j] = float32(r.Rank()*1000 + i*10 + j%7)
					}
					pend[i] = r.Start(ctx, bufs[i]) // all in flight at once
				}
				for i, p := range pend {
					if err := p.Wait(); err != nil {
						return err
					}
					for j, v := range bufs[i] {
						want := float32(0)
						for q := range k {
							want += float32(q*1000 + i*10 + j%7)
						}
						if v != want {
							return fmt.Errorf("bucket %d elem %d: %v want %v", i, j, v, want)
						}
					}
				}
				return nil
			}))
		})
	}
	checkGoroutines(t, base)
}

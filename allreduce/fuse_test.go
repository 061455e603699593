package allreduce

import (
	"context"
	"fmt"
	"testing"
)

func TestFuserMergesReverseLayerOrder(t *testing.T) {
	const k, n = 4, 10_000
	rings := memRings(t, k, Config{JobID: "t", BucketBytes: 4 * 1500})
	ctx := context.Background()
	layers := []int{100, 2500, 7, 3000, 1393, 3000} // sums to n
	mustAll(t, onAll(rings, func(r *Ring) error {
		grads := make([]float32, n)
		for step := range 2 {
			for i := range grads {
				grads[i] = float32((r.Rank() + 1) * (i%11 + step))
			}
			f := r.NewFuser(ctx, grads)
			hi := n
			for l := len(layers) - 1; l >= 0; l-- { // backward: last layer first
				if err := f.Add(grads[hi-layers[l] : hi]); err != nil {
					return err
				}
				hi -= layers[l]
			}
			if got := len(f.pending); got < 3 {
				return fmt.Errorf("only %d buckets started before Wait with 1500-element buckets", got)
			}
			if err := f.Wait(); err != nil {
				return err
			}
			for i, v := range grads {
				if want := float32(k * (k + 1) / 2 * (i%11 + step)); v != want {
					return fmt.Errorf("step %d elem %d: %v want %v", step, i, v, want)
				}
			}
			if err := f.Add(make([]float32, 3)); err == nil {
				return fmt.Errorf("a slice outside the buffer was accepted")
			}
		}
		return nil
	}))
}

package worker

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/infonce/infonce/allreduce"
)

// TestCheckParams: identical parameters pass the cross-rank checksum; one
// flipped bit on one rank stops every rank with an error that says the
// ranks diverged.
func TestCheckParams(t *testing.T) {
	for _, flip := range []bool{false, true} {
		rings, err := allreduce.NewMemRings(3, allreduce.Config{JobID: "checksum"})
		if err != nil {
			t.Fatal(err)
		}
		errs := make([]error, 3)
		var wg sync.WaitGroup
		for k, r := range rings {
			w := make([]float32, 1000)
			for i := range w {
				w[i] = float32(i) / 7
			}
			if flip && k == 2 {
				w[517] = float32(517)/7 + 1e-4
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[k] = checkParams(context.Background(), r, w, 40)
			}()
		}
		wg.Wait()
		for _, r := range rings {
			r.Close()
		}
		for k, err := range errs {
			switch {
			case !flip && err != nil:
				t.Errorf("identical parameters, rank %d: %v", k, err)
			case flip && (err == nil || !errors.Is(err, errFatal) || !strings.Contains(err.Error(), "diverged")):
				t.Errorf("rank 2 differs, rank %d: %v", k, err)
			}
		}
	}
}

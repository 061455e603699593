package model

import (
	"math/rand/v2"
	"runtime"
	"testing"
)

// TestElementwiseOps runs each element-wise operation over a range long
// enough to be split (of a length that is not a multiple of the chunk)
// and checks every element against its formula.
func TestElementwiseOps(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	n := 3*elementwiseParallelMin + 123
	rng := rand.New(rand.NewPCG(1, 2))
	a, b := randT[float32](rng, n), randT[float32](rng, n)
	dst := make([]float32, n)
	var e elementwise[float32]
	for _, tc := range []struct {
		op   elementwiseOp
		name string
		want func(i int) float32
	}{
		{opSum, "a + b", func(i int) float32 { return a[i] + b[i] }},
		{opReLU, "max(a, 0)", func(i int) float32 { return max(a[i], 0) }},
		{opReLUGrad, "a ⊙ [b > 0]", func(i int) float32 {
			if b[i] > 0 {
				return a[i]
			}
			return 0
		}},
	} {
		clear(dst)
		e.run(tc.op, dst, a, b)
		for i := range dst {
			if dst[i] != tc.want(i) {
				t.Fatalf("%s: element %d is %v, want %v", tc.name, i, dst[i], tc.want(i))
			}
		}
	}
}

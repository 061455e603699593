package optim

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The float32 norm (vectorised, float64 products and sum) equals the
// float64 norm of the same values to float64 rounding, for lengths that
// end inside and outside the 8-lane vectors, and passes NaN and Inf on.
func TestNorm2Float32(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, n := range []int{0, 1, 7, 8, 9, 31, 1000, 1 << 16} {
		x32, x64 := make([]float32, n), make([]float64, n)
		for i := range x32 {
			x32[i] = float32(rng.NormFloat64() * 1e3)
			x64[i] = float64(x32[i])
		}
		if got, want := norm2(x32), norm2(x64); math.Abs(got-want) > 1e-13*want {
			t.Errorf("n %d: float32 norm %v, float64 norm %v", n, got, want)
		}
		if n == 0 {
			continue
		}
		x32[n-1] = float32(math.Inf(-1))
		if got := norm2(x32); !math.IsInf(got, 1) {
			t.Errorf("n %d: norm with −Inf = %v", n, got)
		}
		x32[0] = float32(math.NaN())
		if got := norm2(x32); !math.IsNaN(got) {
			t.Errorf("n %d: norm with NaN = %v", n, got)
		}
	}
}

package eval

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestRidgeR2 recovers a linear map (R² ≈ 1 on a target it explains) and
// gives R² ≈ 0 or below on a target of pure noise.
func TestRidgeR2(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const d, n, nt = 4, 400, 200
	gen := func(rows int) ([]float64, []float64) {
		x, y := make([]float64, rows*d), make([]float64, rows*2)
		for i := range rows {
			for j := range d {
				x[i*d+j] = r.NormFloat64()
			}
			y[i*2] = 2*x[i*d] - x[i*d+2] + 0.5 + 0.01*r.NormFloat64()
			y[i*2+1] = r.NormFloat64()
		}
		return x, y
	}
	x, y := gen(n)
	tx, ty := gen(nt)
	r2, err := RidgeR2(x, y, tx, ty, d, 2, 1e-3)
	if err != nil {
		t.Fatal(err)
	}
	if r2[0] < 0.999 || r2[1] > 0.05 {
		t.Fatalf("R² %v, want ≈1 for the linear target and ≈0 for noise", r2)
	}
	if _, err := RidgeR2(x, y[:3], tx, ty, d, 2, 1e-3); err == nil {
		t.Error("mismatched shapes accepted")
	}
}

func TestKendallTau(t *testing.T) {
	for _, tc := range []struct {
		x, y []float64
		want float64
	}{
		{[]float64{1, 2, 3, 4}, []float64{10, 20, 30, 40}, 1},
		{[]float64{1, 2, 3, 4}, []float64{4, 3, 2, 1}, -1},
		{[]float64{1, 2, 3}, []float64{1, 3, 2}, 1.0 / 3},
	} {
		if got := KendallTau(tc.x, tc.y); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("τ(%v, %v) = %v, want %v", tc.x, tc.y, got, tc.want)
		}
	}
	if !math.IsNaN(KendallTau([]float64{1, 1}, []float64{1, 2})) {
		t.Error("a constant x must give NaN")
	}
}

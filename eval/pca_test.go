package eval

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// Four points at (±3, ±1, 0, 0) + (5, 5, 5, 5): the covariance is
// diag(9, 1, 0, 0), so the components are e₁ and e₂ and the projections
// the offsets from the centre.
func TestPCAKnown(t *testing.T) {
	var x []float64
	var want []float64
	for _, a := range []float64{-3, 3} {
		for _, b := range []float64{-1, 1} {
			x = append(x, 5+a, 5+b, 5, 5)
			want = append(want, a, b)
		}
	}
	proj, variance, err := PCA(x, 4, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(variance[0]-9) > 1e-12 || math.Abs(variance[1]-1) > 1e-12 {
		t.Fatalf("variances %v, want [9 1]", variance)
	}
	for i := range want {
		if math.Abs(proj[i]-want[i]) > 1e-12 {
			t.Fatalf("projections %v, want %v", proj, want)
		}
	}
	// float32 rows give the same up to rounding.
	p32, _, err := PCA(to32(x), 4, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if math.Abs(p32[i]-want[i]) > 1e-5 {
			t.Fatalf("float32 projections %v, want %v", p32, want)
		}
	}
}

// On random rows, all d components keep the total variance, and the
// projections onto different components are uncorrelated, each with the
// variance of its component.
func TestPCARandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 5))
	const n, d = 200, 6
	x := make([]float64, n*d)
	for i := range x {
		x[i] = rng.NormFloat64() * float64(1+i%d)
	}
	proj, variance, err := PCA(x, n, d, d)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(variance, func(a, b float64) int { return -cmpFloat(a, b) }) {
		t.Fatalf("variances %v not descending", variance)
	}
	var total, kept float64
	for j := range d {
		var m float64
		for i := range n {
			m += x[i*d+j] / n
		}
		for i := range n {
			total += (x[i*d+j] - m) * (x[i*d+j] - m) / n
		}
		kept += variance[j]
	}
	if math.Abs(total-kept) > 1e-9*total {
		t.Fatalf("components keep variance %v of %v", kept, total)
	}
	for a := range d {
		for b := range d {
			var s float64
			for i := range n {
				s += proj[i*d+a] * proj[i*d+b] / n
			}
			want := 0.0
			if a == b {
				want = variance[a]
			}
			if math.Abs(s-want) > 1e-9*total {
				t.Fatalf("covariance of projections %d, %d is %v, want %v", a, b, s, want)
			}
		}
	}
	if _, _, err := PCA(x, n, d, d+1); err == nil {
		t.Fatal("more components than dimensions accepted")
	}
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestRecallCurve(t *testing.T) {
	got := RecallCurve([]int{1, 2, 2, 5, 60}, 5)
	want := []float64{0.2, 0.6, 0.6, 0.6, 0.8}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-15 {
			t.Fatalf("RecallCurve = %v, want %v", got, want)
		}
	}
	if c := RecallCurve(nil, 2); !math.IsNaN(c[0]) {
		t.Fatalf("no ranks give %v, want NaN", c)
	}
}

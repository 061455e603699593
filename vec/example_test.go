package vec_test

import (
	"fmt"
	"math"

	"github.com/infonce/infonce/vec"
)

// The streamed log-sum-exp of a row of logits and its softmax.
func Example() {
	row := []float32{2, 1, 0.5, -1, 3, 0, 1.5, -2, 2.5}
	m := vec.Max(row)
	lse := float64(m) + math.Log(float64(vec.ExpSum(row, m)))
	p := make([]float32, len(row))
	vec.ExpScale(p, row, float32(lse), 1)
	var total float32
	for _, v := range p {
		total += v
	}
	fmt.Printf("max %.1f, lse %.4f, p[4] %.4f, Σp %.4f\n", m, lse, p[4], total)
	// Output: max 3.0, lse 3.9122, p[4] 0.4016, Σp 1.0000
}

// The GELU of a transformer's MLP and the factor Φ(x) + x φ(x) of its
// gradient.
func ExampleGELU() {
	x := []float32{-3, -1, 0, 1, 3}
	y := make([]float32, len(x))
	vec.GELU(y, x)
	dy := []float32{1, 1, 1, 1, 1}
	dx := make([]float32, len(x))
	vec.GELUGrad(dx, dy, x)
	fmt.Printf("y  %.6f\ndx %.6f\n", y, dx)
	// Output:
	// y  [-0.004050 -0.158655 0.000000 0.841345 2.995950]
	// dx [-0.011946 -0.083315 0.500000 1.083315 1.011946]
}

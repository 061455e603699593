package eval

import (
	"math"

	"github.com/infonce/infonce/gemm"
)

// uniformRows caps the rows used for the uniformity estimate.
const uniformRows = 4096

// AlignmentUniformity implements the two measures of Wang & Isola (2020,
// "Understanding contrastive representation learning through alignment and
// uniformity on the hypersphere"), with α = 2 and t = 2:
//
//	align   = (1/n) Σ_i ‖x_i − y_i‖²                      over the positive pairs (x_i, y_i),
//	uniform = log( 1/(m(m−1)) Σ_{i≠j} exp(−2‖x_i − x_j‖²) )  over the first m = min(n, 4096) rows of x.
//
// Lower is better for both. The squared distances come from
// ‖x_i‖² + ‖x_j‖² − 2⟨x_i, x_j⟩ with one gemm per block of rows, and the mean
// of exponentials is accumulated as a log-sum-exp, so that it cannot
// underflow. n = 0 gives NaN alignment; m < 2 gives NaN uniformity.
func AlignmentUniformity[T gemm.Float](x, y []T, n, d int) (align, uniform float64) {
	mustShape("x", x, n, d)
	mustShape("y", y, n, d)
	var sum float64
	for i := range n * d {
		diff := float64(x[i]) - float64(y[i])
		sum += diff * diff
	}
	align = math.NaN()
	if n > 0 {
		align = sum / float64(n)
	}

	m := min(n, uniformRows)
	if m < 2 {
		return align, math.NaN()
	}
	sq := make([]float64, m) // ‖x_i‖²
	for i := range m {
		for _, v := range x[i*d : (i+1)*d] {
			sq[i] += float64(v) * float64(v)
		}
	}
	blk := blockRows(m)
	s := make([]T, min(blk, m)*m)
	mx, acc := math.Inf(-1), 0.0 // Σ exp(a) = exp(mx)·acc
	for i0 := 0; i0 < m; i0 += blk {
		b := min(blk, m-i0)
		gemm.Gemm(false, true, b, m, d, 1, x[i0*d:], d, x[:m*d], d, 0, s, m) // ⟨x_i, x_j⟩
		for r := range b {
			i := i0 + r
			for j, dot := range s[r*m : (r+1)*m] {
				if j == i {
					continue
				}
				d2 := max(sq[i]+sq[j]-2*float64(dot), 0)
				a := -2 * d2
				if a > mx {
					acc = acc*math.Exp(mx-a) + 1
					mx = a
				} else {
					acc += math.Exp(a - mx)
				}
			}
		}
	}
	uniform = mx + math.Log(acc) - math.Log(float64(m)*float64(m-1))
	return align, uniform
}

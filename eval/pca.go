package eval

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/infonce/infonce/gemm"
)

// PCA projects the n rows of x (n×d, row-major) onto their first k
// principal components: with the centred rows x̃_i = x_i − x̄ and the
// covariance C = (1/n) Σ_i x̃_i x̃_iᵀ = V Λ Vᵀ (eigenvalues λ_1 ≥ λ_2 ≥ …),
// row i of proj (n×k) is (⟨x̃_i, v_1⟩, …, ⟨x̃_i, v_k⟩), and variance[j] is
// λ_{j+1}, the variance along v_{j+1}. Each v_j's sign is chosen so that
// its entry of largest magnitude is positive, which makes the projection a
// function of x alone. It needs n ≥ 1 and 1 ≤ k ≤ d.
func PCA[T gemm.Float](x []T, n, d, k int) (proj, variance []float64, err error) {
	if n < 1 || d < 1 || k < 1 || k > d {
		return nil, nil, fmt.Errorf("eval: PCA of %d×%d onto %d components: want n ≥ 1 and 1 ≤ k ≤ d", n, d, k)
	}
	mustShape("x", x, n, d)
	mean := make([]float64, d)
	for i := range n {
		for j, v := range x[i*d : (i+1)*d] {
			mean[j] += float64(v)
		}
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	cov := mat.NewSymDense(d, nil)
	c := make([]float64, d)
	for i := range n {
		for j, v := range x[i*d : (i+1)*d] {
			c[j] = float64(v) - mean[j]
		}
		for a := range d {
			for b := a; b < d; b++ {
				cov.SetSym(a, b, cov.At(a, b)+c[a]*c[b]/float64(n))
			}
		}
	}
	var eig mat.EigenSym
	if !eig.Factorize(cov, true) {
		return nil, nil, fmt.Errorf("eval: PCA: the eigendecomposition of the %d×%d covariance failed", d, d)
	}
	vals := eig.Values(nil) // ascending
	var vecs mat.Dense
	eig.VectorsTo(&vecs)
	comps := make([][]float64, k)
	variance = make([]float64, k)
	for j := range k {
		col := d - 1 - j
		variance[j] = math.Max(vals[col], 0)
		v := make([]float64, d)
		big := 0
		for a := range d {
			v[a] = vecs.At(a, col)
			if math.Abs(v[a]) > math.Abs(v[big]) {
				big = a
			}
		}
		if v[big] < 0 {
			for a := range v {
				v[a] = -v[a]
			}
		}
		comps[j] = v
	}
	proj = make([]float64, n*k)
	for i := range n {
		for a, v := range x[i*d : (i+1)*d] {
			c[a] = float64(v) - mean[a]
		}
		for j, v := range comps {
			var s float64
			for a := range d {
				s += c[a] * v[a]
			}
			proj[i*k+j] = s
		}
	}
	return proj, variance, nil
}

// RecallCurve is the fraction of queries whose 1-based rank is at most k,
// for k = 1, …, K: out[k−1] = |{r ∈ ranks : r ≤ k}| / |ranks| (R@k of a
// retrieval, nondecreasing in k). No ranks give NaN.
func RecallCurve(ranks []int, K int) []float64 {
	count := make([]int, K+1)
	for _, r := range ranks {
		if r >= 1 && r <= K {
			count[r]++
		}
	}
	out := make([]float64, K)
	hits := 0
	for k := 1; k <= K; k++ {
		hits += count[k]
		out[k-1] = frac(hits, len(ranks))
	}
	return out
}

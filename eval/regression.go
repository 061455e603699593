package eval

import (
	"errors"
	"fmt"
	"math"

	"github.com/infonce/infonce/gemm"
)

// RidgeR2 fits a linear map with bias from features to targets by ridge
// regression on the training rows,
//
//	W = (XᵀX + λI)⁻¹ XᵀY  (X with a column of ones, the bias not penalised),
//
// and returns the coefficient of determination of each target dimension
// on the test rows, R²_k = 1 − Σ_i (y_ik − ŷ_ik)² / Σ_i (y_ik − ȳ_k)², with
// ȳ the test mean; a constant test target gives NaN. d is the feature
// width and m the target width.
func RidgeR2[T gemm.Float](trainX []T, trainY []float64, testX []T, testY []float64, d, m int, lambda float64) ([]float64, error) {
	n, nt := len(trainY)/max(m, 1), len(testY)/max(m, 1)
	if d < 1 || m < 1 || n < 1 || nt < 1 || len(trainX) != n*d || len(testX) != nt*d {
		return nil, fmt.Errorf("eval: ridge: %d×%d features for %d×%d targets, %d×%d test features for %d×%d targets", len(trainX)/max(d, 1), d, n, m, len(testX)/max(d, 1), d, nt, m)
	}
	p := d + 1 // features and the bias
	a := make([]float64, p*p)
	b := make([]float64, p*m)
	row := make([]float64, p)
	for i := range n {
		for j := range d {
			row[j] = float64(trainX[i*d+j])
		}
		row[d] = 1
		for j := range p {
			for k := range p {
				a[j*p+k] += row[j] * row[k]
			}
			for k := range m {
				b[j*m+k] += row[j] * trainY[i*m+k]
			}
		}
	}
	for j := range d {
		a[j*p+j] += lambda
	}
	if err := solveCholesky(a, b, p, m); err != nil {
		return nil, fmt.Errorf("eval: ridge: %w", err)
	}
	mean := make([]float64, m)
	for i := range nt {
		for k := range m {
			mean[k] += testY[i*m+k] / float64(nt)
		}
	}
	sse, sst := make([]float64, m), make([]float64, m)
	for i := range nt {
		for k := range m {
			yhat := b[d*m+k]
			for j := range d {
				yhat += float64(testX[i*d+j]) * b[j*m+k]
			}
			e, c := testY[i*m+k]-yhat, testY[i*m+k]-mean[k]
			sse[k] += e * e
			sst[k] += c * c
		}
	}
	r2 := make([]float64, m)
	for k := range m {
		r2[k] = 1 - sse[k]/sst[k]
		if sst[k] == 0 {
			r2[k] = math.NaN()
		}
	}
	return r2, nil
}

// solveCholesky solves A X = B in place (X into b) for a symmetric
// positive definite p×p A and p×m B.
func solveCholesky(a, b []float64, p, m int) error {
	for j := range p {
		s := a[j*p+j]
		for k := range j {
			s -= a[j*p+k] * a[j*p+k]
		}
		if !(s > 0) {
			return errors.New("the normal equations are not positive definite (add ridge)")
		}
		a[j*p+j] = math.Sqrt(s)
		for i := j + 1; i < p; i++ {
			s := a[i*p+j]
			for k := range j {
				s -= a[i*p+k] * a[j*p+k]
			}
			a[i*p+j] = s / a[j*p+j]
		}
	}
	for c := range m {
		for i := range p { // L y = b
			s := b[i*m+c]
			for k := range i {
				s -= a[i*p+k] * b[k*m+c]
			}
			b[i*m+c] = s / a[i*p+i]
		}
		for i := p - 1; i >= 0; i-- { // Lᵀ x = y
			s := b[i*m+c]
			for k := i + 1; k < p; k++ {
				s -= a[k*p+i] * b[k*m+c]
			}
			b[i*m+c] = s / a[i*p+i]
		}
	}
	return nil
}

// KendallTau is Kendall's τ-b between x and y: (concordant − discordant)
// pairs over √((n₀ − tied x)(n₀ − tied y)), n₀ = n(n−1)/2; NaN when either
// is constant or n < 2.
func KendallTau(x, y []float64) float64 {
	n := min(len(x), len(y))
	var con, dis, tx, ty float64
	for i := range n {
		for j := i + 1; j < n; j++ {
			dx, dy := x[i]-x[j], y[i]-y[j]
			switch {
			case dx == 0 && dy == 0:
				tx++
				ty++
			case dx == 0:
				tx++
			case dy == 0:
				ty++
			case (dx > 0) == (dy > 0):
				con++
			default:
				dis++
			}
		}
	}
	n0 := float64(n*(n-1)) / 2
	den := math.Sqrt((n0 - tx) * (n0 - ty))
	if den == 0 {
		return math.NaN()
	}
	return (con - dis) / den
}

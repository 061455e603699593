package gemm

import (
	"fmt"
	"sync/atomic"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// Float is the element type of every buffer in infonce.
type Float interface {
	float32 | float64
}

// Kernel32 computes C = alpha*op(A)*op(B) + beta*C in float32, row-major,
// where op(A) is m×k (A is k×m when transA), op(B) is k×n (B is n×k when
// transB) and lda, ldb, ldc are the row strides. It must not retain the
// slices after it returns.
type Kernel32 interface {
	Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
}

// Kernel64 is the float64 counterpart of Kernel32.
type Kernel64 interface {
	Dgemm(transA, transB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int)
}

type holder32 struct{ k Kernel32 }

var current32 atomic.Pointer[holder32]

// init selects the float32 kernel: the one of a build tag (openblas), else
// the fastest the CPU supports (see Native).
func init() {
	k := buildTagKernel
	if k == nil {
		k = Native()
	}
	current32.Store(&holder32{k: k})
}

// Use makes k the float32 kernel for every later call and returns the
// previous one, so that a test or a benchmark can restore it.
func Use(k Kernel32) (previous Kernel32) {
	if k == nil {
		k = Gonum{}
	}
	return current32.Swap(&holder32{k: k}).k
}

// Current returns the float32 kernel in use.
func Current() Kernel32 { return current32.Load().k }

// Gemm computes C = alpha*op(A)*op(B) + beta*C (see Kernel32) with the
// kernel of the element type: the swappable float32 kernel, or gonum's
// float64 kernel.
func Gemm[T Float](transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	switch cc := any(c).(type) {
	case []float32:
		current32.Load().k.Sgemm(transA, transB, m, n, k, float32(alpha), any(a).([]float32), lda, any(b).([]float32), ldb, float32(beta), cc, ldc)
	case []float64:
		Gonum{}.Dgemm(transA, transB, m, n, k, float64(alpha), any(a).([]float64), lda, any(b).([]float64), ldb, float64(beta), cc, ldc)
	}
}

// BiasKernel32 is a Kernel32 that can start C from a row vector: it
// computes C = alpha*op(A)*op(B) + 1·biasᵀ, every row of C beginning as
// bias (length n), with the bias written into each tile of C just before
// the tile's first product rather than in a pass over C of its own.
type BiasKernel32 interface {
	SgemmBias(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, bias []float32, c []float32, ldc int)
}

// GemmBias computes C = alpha*op(A)*op(B) + 1·biasᵀ, the affine map of a
// Linear layer: every row of C is bias plus the row of the product. It
// gives the same bits as copying bias into every row of C and calling Gemm
// with beta = 1, which it does for kernels that are not BiasKernel32s.
func GemmBias[T Float](transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, bias []T, c []T, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if cc, ok := any(c).([]float32); ok {
		if bk, ok := current32.Load().k.(BiasKernel32); ok {
			bk.SgemmBias(transA, transB, m, n, k, float32(alpha), any(a).([]float32), lda, any(b).([]float32), ldb, any(bias).([]float32), cc, ldc)
			return
		}
	}
	setRows(m, n, bias, c, ldc)
	Gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, 1, c, ldc)
}

// setRows sets each of the m rows of C to the n elements of row.
func setRows[T Float](m, n int, row, c []T, ldc int) {
	for i := 0; i < m; i++ {
		copy(c[i*ldc:i*ldc+n], row[:n])
	}
}

// SerialKernel32 is a Kernel32 that can compute a product on the calling
// goroutine alone.
type SerialKernel32 interface {
	SgemmSerial(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
}

// GemmSerial is Gemm on the calling goroutine alone where the kernel can
// (a SerialKernel32), for callers that split their work over goroutines
// themselves; it gives the bits of Gemm.
func GemmSerial[T Float](transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if cc, ok := any(c).([]float32); ok {
		if sk, ok := current32.Load().k.(SerialKernel32); ok {
			sk.SgemmSerial(transA, transB, m, n, k, float32(alpha), any(a).([]float32), lda, any(b).([]float32), ldb, float32(beta), cc, ldc)
			return
		}
	}
	Gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Gonum is the pure-Go kernel of gonum.org/v1/gonum/blas/gonum.
type Gonum struct{}

func trans(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// Sgemm implements Kernel32.
func (Gonum) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if k == 0 {
		scale(m, n, beta, c, ldc)
		return
	}
	gonum.Implementation{}.Sgemm(trans(transA), trans(transB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Dgemm implements Kernel64.
func (Gonum) Dgemm(transA, transB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	if k == 0 {
		scale(m, n, beta, c, ldc)
		return
	}
	gonum.Implementation{}.Dgemm(trans(transA), trans(transB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// scale sets C = beta*C, the whole product when the inner dimension is 0.
func scale[T Float](m, n int, beta T, c []T, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		for j := range row {
			if beta == 0 {
				row[j] = 0
			} else {
				row[j] *= beta
			}
		}
	}
}

// Check reports whether the arguments describe valid row-major operands; a
// kernel may assume they do. It exists for callers that take shapes from
// outside (benchmarks, fuzz tests).
func Check(transA, transB bool, m, n, k, lenA, lda, lenB, ldb, lenC, ldc int) error {
	if m < 0 || n < 0 || k < 0 {
		return fmt.Errorf("gemm: negative dimension m=%d n=%d k=%d", m, n, k)
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	for _, op := range []struct {
		name              string
		rows, cols, ld, n int
	}{{"A", ar, ac, lda, lenA}, {"B", br, bc, ldb, lenB}, {"C", m, n, ldc, lenC}} {
		if op.ld < max(1, op.cols) {
			return fmt.Errorf("gemm: leading dimension of %s is %d, want at least %d", op.name, op.ld, max(1, op.cols))
		}
		if op.rows > 0 && op.cols > 0 && op.n < (op.rows-1)*op.ld+op.cols {
			return fmt.Errorf("gemm: %s has %d elements, want at least %d", op.name, op.n, (op.rows-1)*op.ld+op.cols)
		}
	}
	return nil
}

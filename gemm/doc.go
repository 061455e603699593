// Package gemm is the one place where infonce multiplies matrices.
//
// Every matrix product of the model and the objectives is a general matrix
// multiply in row-major order,
//
//	C = alpha * op(A) * op(B) + beta * C,   op(X) = X or Xᵀ,
//
// with op(A) of shape m×k, op(B) of shape k×n and C of shape m×n. The
// generic Gemm serves both element types: float32 for training and float64
// for the exact test path. The float32 kernel is swappable through Use, so a
// kernel plugs in without any change to the callers. The default is Native():
// register-blocked AVX-512 or AVX2+FMA micro-kernels in Go assembly with
// packed, cache-blocked panels, chosen from the CPU's features at start-up;
// other CPUs and the purego build tag get gonum's pure-Go BLAS. Neither needs
// cgo, so the binary stays static. The openblas build tag uses OpenBLAS
// through cgo instead.
//
// Two variants serve the layers: GemmBias starts every row of C from a bias
// row (a Linear layer's y = x Wᵀ + b) inside the blocked product, and
// GemmSerial keeps a product on the calling goroutine for a layer that
// splits its work over the cores itself. Both give the bits of the plain
// product they stand for.
package gemm

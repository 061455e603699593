package gemm_test

import (
	"fmt"

	"github.com/infonce/infonce/gemm"
)

// A product with the second operand transposed: the kernel reads Bᵀ while
// packing, nothing is transposed in memory.
func ExampleNative() {
	prev := gemm.Use(gemm.Native()) // AVX-512, AVX2+FMA or pure Go: whatever this CPU runs
	defer gemm.Use(prev)

	// A is 2×3, B is 2×3 and used as Bᵀ (3×2), so C = A·Bᵀ is 2×2.
	a := []float32{
		1, 2, 3,
		4, 5, 6,
	}
	b := []float32{
		1, 0, 1,
		0, 1, 0,
	}
	c := []float32{
		100, 100,
		100, 100,
	}
	// C = 1·A·Bᵀ + 0.5·C
	gemm.Gemm(false, true, 2, 2, 3, 1, a, 3, b, 3, 0.5, c, 2)
	fmt.Println(c)
	// Output: [54 52 60 55]
}

// A 3×2 block inside a wider matrix: the leading dimensions (row strides)
// let a kernel work on a window without copying it.
func ExampleGemm_strides() {
	// A is the left 3×2 block of a 3×4 buffer (lda = 4), B a 2×2 matrix.
	a := []float32{
		1, 2, -1, -1,
		3, 4, -1, -1,
		5, 6, -1, -1,
	}
	b := []float32{
		1, 1,
		0, 1,
	}
	c := make([]float32, 3*2)
	gemm.Gemm(false, false, 3, 2, 2, 1, a, 4, b, 2, 0, c, 2)
	fmt.Println(c)
	// Output: [1 3 3 7 5 11]
}

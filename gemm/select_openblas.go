//go:build openblas && cgo

package gemm

import "github.com/infonce/infonce/gemm/openblas"

// buildTagKernel is OpenBLAS under the build tag openblas.
var buildTagKernel Kernel32 = openblas.Kernel{}

//go:build !(openblas && cgo)

package gemm

// buildTagKernel is the float32 kernel chosen by a build tag, if any.
var buildTagKernel Kernel32

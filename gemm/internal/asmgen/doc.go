// Command asmgen writes the float32 GEMM micro-kernels of package gemm in Go
// assembly, using avo. It is run by go generate from the gemm folder:
//
//	go run ./internal/asmgen -out sgemm_amd64.s -stubs sgemm_stub_amd64.go -pkg gemm
//
// Each micro-kernel computes one mr×nr tile of C from a packed sliver of A
// (kc columns of mr values, column after column) and a packed sliver of B
// (kc rows of nr values, row after row):
//
//	C[0:mr, 0:nr] = alpha · Σ_{p<kc} a[p·mr : p·mr+mr] ⊗ b[p·nr : p·nr+nr] + beta · C[0:mr, 0:nr]
//
// The mr×nr accumulators stay in vector registers for the whole k loop: per
// step of p, nr/w vectors of B are loaded (w = 8 lanes for YMM, 16 for ZMM)
// and each of the mr values of A is broadcast and multiplied into one row of
// accumulators with a fused multiply-add. When beta is 0 (or -0) C is only
// written, never read, so stale NaNs in C do not leak into the result.
//
// It also writes the packing routines that gather the slivers: transposePack6
// and transposePack8 (8×8 register transposes, for slivers that gather
// columns of a row-major matrix) and copyRows6/14/16/32 (for slivers that are
// runs of neighbouring elements of its rows).
package main

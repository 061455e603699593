//go:build purego || !amd64

package gemm

var (
	avx2Kernel, avx512Kernel *Blocked
	avx2Missing              = "not built (needs amd64 without the purego build tag)"
	avx512Missing            = avx2Missing
)

// withAsmPacking returns g: there are no assembly packers in this build.
func withAsmPacking(g *Blocked) *Blocked { return g }

package gemm

import "fmt"

// Native returns the fastest float32 kernel this CPU and build can run: the
// AVX-512 kernel, else the AVX2+FMA kernel, else the pure-Go Gonum kernel
// (other architectures, CPUs without AVX2 and FMA, and the purego build
// tag). Each assembly micro-kernel is checked once at start-up against the
// portable one on a small tile, and is not offered if they disagree. Package
// gemm starts with this kernel, except under the build tag
// openblas, where it starts with OpenBLAS (package gemm/openblas).
func Native() Kernel32 {
	if k, err := AVX512(); err == nil {
		return k
	}
	if k, err := AVX2(); err == nil {
		return k
	}
	return Gonum{}
}

// AVX2 returns the kernel built on the 6×16 AVX2+FMA micro-kernel, or an
// error that says why this CPU or build cannot run it.
//
// The tile is 6 rows × 16 columns: 12 YMM accumulators, 2 YMM for a row of
// the B sliver and 2 for broadcasts of A: all 16 YMM registers. The
// blocks are kc = 256 (a 16 KiB sliver of B̃ and a 6 KiB sliver of Ã in the
// 32 KiB L1), mc = 120 (a 120 KiB Ã in the 512 KiB L2) and nc = 3072 (a
// 3 MiB B̃ panel in L3).
func AVX2() (*Blocked, error) {
	if avx2Kernel == nil {
		return nil, fmt.Errorf("gemm: AVX2 kernel: %s", avx2Missing)
	}
	return avx2Kernel, nil
}

// AVX512 returns the kernel built on the 14×32 AVX-512F micro-kernel, or an
// error that says why this CPU or build cannot run it.
//
// The tile is 14 rows × 32 columns: 28 ZMM accumulators, 2 ZMM for a row of
// the B sliver and 2 for broadcasts of A, all 32 ZMM registers. The blocks
// are kc = 192 (a 24 KiB sliver of B̃ in a 32 KiB or 48 KiB L1), mc = 168
// (a 126 KiB Ã in L2) and nc = 3072.
func AVX512() (*Blocked, error) {
	if avx512Kernel == nil {
		return nil, fmt.Errorf("gemm: AVX-512 kernel: %s", avx512Missing)
	}
	return avx512Kernel, nil
}

// newGoBlocked is the blocked driver around the portable micro-kernel.
func newGoBlocked(mr, nr, mc, kc, nc int) *Blocked {
	return &Blocked{name: fmt.Sprintf("go-%dx%d", mr, nr), mr: mr, nr: nr, mc: mc, kc: kc, nc: nc, micro: microGo(mr, nr)}
}

//go:build !purego

package gemm

import "golang.org/x/sys/cpu"

//go:generate go run ./internal/asmgen -out sgemm_amd64.s -stubs sgemm_stub_amd64.go -pkg gemm

var (
	avx2Kernel, avx2Missing     = newAVX2()
	avx512Kernel, avx512Missing = newAVX512()
)

func newAVX2() (*Blocked, string) {
	if !cpu.X86.HasAVX2 || !cpu.X86.HasFMA {
		return nil, "this CPU lacks AVX2 or FMA"
	}
	g := &Blocked{name: "avx2-6x16", mr: 6, nr: 16, mc: 120, kc: 256, nc: 3072, micro: sgemmKernel6x16AVX2, transpose8: transposePack8, transpose6: transposePack6, copyA: copyRows6, copyB: copyRows16}
	if err := selfCheck(g); err != nil {
		return nil, "failed its start-up check: " + err.Error()
	}
	return g, ""
}

func newAVX512() (*Blocked, string) {
	if !cpu.X86.HasAVX512F {
		return nil, "this CPU (or its OS) lacks AVX-512F"
	}
	g := &Blocked{name: "avx512-14x32", mr: 14, nr: 32, mc: 168, kc: 192, nc: 3072, micro: sgemmKernel14x32AVX512, transpose8: transposePack8, transpose6: transposePack6, copyA: copyRows14, copyB: copyRows32}
	if err := selfCheck(g); err != nil {
		return nil, "failed its start-up check: " + err.Error()
	}
	return g, ""
}

// withAsmPacking gives g the assembly packers of the tile mr×nr when the
// CPU has AVX, so that the driver of the AVX-512 kernel can be tested with
// the portable micro-kernel on CPUs without AVX-512.
func withAsmPacking(g *Blocked) *Blocked {
	if !cpu.X86.HasAVX {
		return g
	}
	g.transpose8, g.transpose6 = transposePack8, transposePack6
	switch g.mr {
	case 6:
		g.copyA = copyRows6
	case 14:
		g.copyA = copyRows14
	}
	switch g.nr {
	case 16:
		g.copyB = copyRows16
	case 32:
		g.copyB = copyRows32
	}
	g.name += "+asm-packing"
	return g
}

package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// biasReference is what GemmBias promises to equal bit for bit: bias
// copied into every row of C, then C = alpha·op(A)·op(B) + 1·C.
func biasReference(k Kernel32, tA, tB bool, m, n, kk int, alpha float32, a []float32, lda int, b []float32, ldb int, bias, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		copy(c[i*ldc:i*ldc+n], bias[:n])
	}
	k.Sgemm(tA, tB, m, n, kk, alpha, a, lda, b, ldb, 1, c, ldc)
}

// checkBias runs one product through GemmBias with kern in use and
// through biasReference, and requires the same bits; the pad columns of C
// must keep their values.
func checkBias(t *testing.T, kern Kernel32, tA, tB bool, m, n, k, pad int, alpha float32, rng *rand.Rand) {
	t.Helper()
	lda, ldb, ldc := k+pad, n+pad, n+pad
	ar, br := m, k
	if tA {
		lda, ar = m+pad, k
	}
	if tB {
		ldb, br = k+pad, n
	}
	fill := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		return x
	}
	a, b, bias := fill(max(1, ar*lda)), fill(max(1, br*ldb)), fill(n)
	got, want := fill(max(1, m*ldc)), make([]float32, max(1, m*ldc))
	copy(want, got)
	biasReference(kern, tA, tB, m, n, k, alpha, a, lda, b, ldb, bias, want, ldc)
	prev := Use(kern)
	GemmBias(tA, tB, m, n, k, alpha, a, lda, b, ldb, bias, got, ldc)
	Use(prev)
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%v %dx%dx%d tA=%v tB=%v pad=%d alpha=%v: C[%d] = %v, want %v", kern, m, n, k, tA, tB, pad, alpha, i, got[i], want[i])
		}
	}
}

// TestGemmBiasMatchesCopyThenGemm checks that every kernel's GemmBias,
// whether it sets the bias per tile (Blocked) or falls back to a copy
// (gonum), gives the bits of a copy of the bias into C followed by a
// product with beta = 1: on shapes of one tile, of partial tiles, of many
// cache blocks (the small-block kernels) and of parallel products.
func TestGemmBiasMatchesCopyThenGemm(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	shapes := [][3]int{{1, 1, 1}, {14, 32, 7}, {15, 33, 40}, {37, 45, 300}, {0, 5, 3}, {4, 5, 0}, {200, 150, 130}, {300, 576, 192}}
	for _, kc := range kernelCases() {
		if kc.skip != "" {
			t.Logf("%s: %s", kc.name, kc.skip)
			continue
		}
		for _, s := range shapes {
			if s[0]*s[1]*s[2] > 1<<20 && (raceEnabled || strings.HasPrefix(kc.name, "go-")) {
				continue // the portable micro-kernel, and the race detector, are slow on the largest product
			}
			t.Run(fmt.Sprintf("%s/%dx%dx%d", kc.name, s[0], s[1], s[2]), func(t *testing.T) {
				for _, tr := range [][2]bool{{false, true}, {true, false}} {
					for _, alpha := range []float32{1, -0.5, 0} {
						checkBias(t, kc.k, tr[0], tr[1], s[0], s[1], s[2], 3, alpha, rng)
					}
				}
			})
		}
	}
}

// TestGemmBiasFloat64 checks the float64 path, which always copies.
func TestGemmBiasFloat64(t *testing.T) {
	a := []float64{1, 2, 3, 4}       // 2×2
	b := []float64{1, 0, 0, 1, 1, 1} // 3×2, used transposed
	bias := []float64{10, 20, 30}
	c := make([]float64, 6)
	GemmBias(false, true, 2, 3, 2, 1, a, 2, b, 2, bias, c, 3)
	want := []float64{11, 22, 33, 13, 24, 37}
	for i := range c {
		if c[i] != want[i] {
			t.Fatalf("C = %v, want %v", c, want)
		}
	}
}

// TestGemmSerialSameBits checks that GemmSerial gives the bits of Gemm
// on products large enough for Gemm to split over workers.
func TestGemmSerialSameBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	for _, kc := range kernelCases() {
		if kc.skip != "" || strings.HasPrefix(kc.name, "go-") {
			continue
		}
		for _, s := range [][3]int{{300, 200, 150}, {32, 4096, 288}, {7, 3, 2}} {
			m, n, k := s[0], s[1], s[2]
			a, b := make([]float32, m*k), make([]float32, k*n)
			for _, x := range [][]float32{a, b} {
				for i := range x {
					x[i] = float32(rng.NormFloat64())
				}
			}
			want, got := make([]float32, m*n), make([]float32, m*n)
			prev := Use(kc.k)
			Gemm(false, false, m, n, k, 1, a, k, b, n, 0, want, n)
			GemmSerial(false, false, m, n, k, 1, a, k, b, n, 0, got, n)
			Use(prev)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s %v: C[%d] = %v serially, %v by Gemm", kc.name, s, i, got[i], want[i])
				}
			}
		}
	}
}

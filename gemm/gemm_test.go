package gemm

import (
	"math"
	"math/rand/v2"
	"testing"
)

// naive is the float64 reference: C = alpha*op(A)*op(B) + beta*C.
func naive(transA, transB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var x, y float64
				if transA {
					x = a[p*lda+i]
				} else {
					x = a[i*lda+p]
				}
				if transB {
					y = b[j*ldb+p]
				} else {
					y = b[p*ldb+j]
				}
				s += x * y
			}
			c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
		}
	}
}

func TestGemmMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	shapes := [][3]int{{1, 1, 1}, {3, 5, 7}, {17, 1, 9}, {0, 4, 4}, {4, 4, 0}, {33, 65, 31}}
	for _, s := range shapes {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				m, n, k := s[0], s[1], s[2]
				lda, ldb, ldc := k+1, n+2, n+3
				if tA {
					lda = m + 1
				}
				if tB {
					ldb = k + 2
				}
				a := make([]float64, max(m, k)*lda+1)
				b := make([]float64, max(n, k)*ldb+1)
				c := make([]float64, m*ldc+1)
				for _, x := range [][]float64{a, b, c} {
					for i := range x {
						x[i] = rng.Float64()*2 - 1
					}
				}
				want := append([]float64(nil), c...)
				naive(tA, tB, m, n, k, 0.5, a, lda, b, ldb, -1.5, want, ldc)
				got64 := append([]float64(nil), c...)
				Gemm(tA, tB, m, n, k, 0.5, a, lda, b, ldb, -1.5, got64, ldc)
				got32 := make([]float32, len(c))
				a32, b32 := to32(a), to32(b)
				for i := range c {
					got32[i] = float32(c[i])
				}
				Gemm(tA, tB, m, n, k, float32(0.5), a32, lda, b32, ldb, float32(-1.5), got32, ldc)
				for i := range want {
					if math.Abs(got64[i]-want[i]) > 1e-12*(1+float64(k)) {
						t.Fatalf("float64 %v tA=%v tB=%v: c[%d]=%g want %g", s, tA, tB, i, got64[i], want[i])
					}
					if math.Abs(float64(got32[i])-want[i]) > 1e-5*(1+float64(k)) {
						t.Fatalf("float32 %v tA=%v tB=%v: c[%d]=%g want %g", s, tA, tB, i, got32[i], want[i])
					}
				}
			}
		}
	}
}

func to32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

type counting struct {
	Kernel32
	calls int
}

func (c *counting) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cc []float32, ldc int) {
	c.calls++
	c.Kernel32.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cc, ldc)
}

func TestUseSwapsKernel(t *testing.T) {
	k := &counting{Kernel32: Gonum{}}
	prev := Use(k)
	defer Use(prev)
	c := make([]float32, 1)
	Gemm(false, false, 1, 1, 1, 1, []float32{2}, 1, []float32{3}, 1, 0, c, 1)
	if k.calls != 1 || c[0] != 6 {
		t.Fatalf("calls=%d c=%v, want 1 call and 6", k.calls, c[0])
	}
}

func TestCheck(t *testing.T) {
	if err := Check(false, false, 2, 3, 4, 8, 4, 12, 3, 6, 3); err != nil {
		t.Fatal(err)
	}
	if err := Check(false, false, 2, 3, 4, 7, 4, 12, 3, 6, 3); err == nil {
		t.Fatal("short A accepted")
	}
	if err := Check(true, false, 2, 3, 4, 8, 1, 12, 3, 6, 3); err == nil {
		t.Fatal("small lda accepted")
	}
}

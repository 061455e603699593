//go:build openblas && cgo

package openblas_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/gemm/openblas"
)

func TestSelectedUnderTag(t *testing.T) {
	if _, ok := gemm.Current().(openblas.Kernel); !ok {
		t.Fatalf("gemm.Current() = %T under the openblas tag, want openblas.Kernel", gemm.Current())
	}
}

// TestMatchesGonum compares cblas_sgemm with gonum's Sgemm on every
// transpose, with strides and scalars.
func TestMatchesGonum(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range [][3]int{{1, 1, 1}, {7, 9, 0}, {13, 33, 31}, {64, 3, 100}} {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				m, n, k := s[0], s[1], s[2]
				lda, ldb, ldc := k+2, n+1, n+3
				if tA {
					lda = m + 2
				}
				if tB {
					ldb = k + 1
				}
				a := randSlice(rng, max(m, k)*lda)
				b := randSlice(rng, max(n, k)*ldb)
				c := randSlice(rng, m*ldc)
				want := append([]float32(nil), c...)
				gemm.Gonum{}.Sgemm(tA, tB, m, n, k, 0.5, a, lda, b, ldb, -2, want, ldc)
				openblas.Kernel{}.Sgemm(tA, tB, m, n, k, 0.5, a, lda, b, ldb, -2, c, ldc)
				for i := range c {
					if d := math.Abs(float64(c[i] - want[i])); d > 1e-5*float64(k+1) {
						t.Fatalf("%v tA=%v tB=%v: c[%d] = %g, want %g", s, tA, tB, i, c[i], want[i])
					}
				}
			}
		}
	}
}

// TestBetaZeroIgnoresNaN checks that beta = 0 overwrites C, as package
// gemm's kernels do.
func TestBetaZeroIgnoresNaN(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	m, n, k := 9, 17, 5
	a, b := randSlice(rng, m*k), randSlice(rng, k*n)
	c := make([]float32, m*n)
	for i := range c {
		c[i] = float32(math.NaN())
	}
	openblas.Kernel{}.Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
	for i, v := range c {
		if math.IsNaN(float64(v)) {
			t.Fatalf("c[%d] is NaN after beta = 0", i)
		}
	}
}

func randSlice(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.Float64()*2 - 1)
	}
	return x
}

type shape struct {
	name    string
	tA, tB  bool
	m, n, k int
}

// BenchmarkCompare measures OpenBLAS, gemm's native kernel and gonum on the
// same shapes in one run, with 1 and 2 threads (OpenBLAS's thread count, or
// GOMAXPROCS for the Go kernels), and reports GFLOPS = 2·m·n·k per second.
func BenchmarkCompare(b *testing.B) {
	b.Logf("OpenBLAS core %s (OPENBLAS_CORETYPE=%q), config %s; native gemm kernel %v",
		openblas.CoreName(), os.Getenv("OPENBLAS_CORETYPE"), openblas.Config(), gemm.Native())
	shapes := []shape{
		{"512x512x512/NN", false, false, 512, 512, 512},
		{"1024x1024x1024/NN", false, false, 1024, 1024, 1024},
		{"512x512x784/NN", false, false, 512, 512, 784},
		{"512x512x784/NT", false, true, 512, 512, 784},
		{"512x512x784/TN", true, false, 512, 512, 784},
	}
	kernels := []struct {
		name string
		k    gemm.Kernel32
	}{{"openblas", openblas.Kernel{}}, {"native", gemm.Native()}, {"gonum", gemm.Gonum{}}}
	for _, s := range shapes {
		for _, kern := range kernels {
			for _, threads := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/%s/threads=%d", s.name, kern.name, threads), func(b *testing.B) {
					defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(threads))
					prev := openblas.Threads()
					openblas.SetThreads(threads)
					defer openblas.SetThreads(prev)
					run(b, kern.k, s)
				})
			}
		}
	}
}

func run(b *testing.B, kern gemm.Kernel32, s shape) {
	rng := rand.New(rand.NewPCG(1, 1))
	a, bb, c := randSlice(rng, s.m*s.k), randSlice(rng, s.k*s.n), make([]float32, s.m*s.n)
	lda, ldb := s.k, s.n
	if s.tA {
		lda = s.m
	}
	if s.tB {
		ldb = s.k
	}
	kern.Sgemm(s.tA, s.tB, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, s.n)
	b.ResetTimer()
	cpu0 := cpuSeconds()
	var fastest time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		kern.Sgemm(s.tA, s.tB, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, s.n)
		if d := time.Since(t0); i == 0 || d < fastest {
			fastest = d
		}
	}
	cpu := cpuSeconds() - cpu0
	flops := 2 * float64(s.m) * float64(s.n) * float64(s.k) * float64(b.N)
	b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOPS")
	// The fastest call: on a machine shared with other work, the call
	// that ran undisturbed.
	b.ReportMetric(flops/float64(b.N)/fastest.Seconds()/1e9, "best-GFLOPS")
	if cpu > 0 {
		// Flops per CPU second of the whole process: steadier than wall
		// time on a shared machine, but inflated by OpenBLAS's threads
		// that spin while they wait.
		b.ReportMetric(flops/cpu/1e9, "GFLOP/cpu-s")
	}
}

// cpuSeconds is the CPU time (user + system) the process has used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

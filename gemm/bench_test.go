package gemm

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// benchShape is one product of the benchmarks: 512³, 1024³ and the
// training shapes (a 512×784 batch times a 784×512 weight, in the three
// layouts of the forward and backward passes, and the forward of the
// 256-row local batch of 2 workers).
type benchShape struct {
	name    string
	tA, tB  bool
	m, n, k int
}

var benchShapes = []benchShape{
	{"512x512x512/NN", false, false, 512, 512, 512},
	{"1024x1024x1024/NN", false, false, 1024, 1024, 1024},
	{"512x512x784/NN", false, false, 512, 512, 784},
	{"512x512x784/NT", false, true, 512, 512, 784},
	{"256x512x784/NT", false, true, 256, 512, 784},
	{"512x512x784/TN", true, false, 512, 512, 784},
}

// BenchmarkSgemm reports GFLOPS (2·m·n·k per product) of every kernel with
// 1 and 2 threads (GOMAXPROCS).
func BenchmarkSgemm(b *testing.B) {
	kernels := []kernelCase{{name: "gonum", k: Gonum{}}}
	for _, c := range kernelCases() {
		if c.name == "avx2" || c.name == "avx512" {
			kernels = append(kernels, c)
		}
	}
	for _, s := range benchShapes {
		for _, kc := range kernels {
			for _, threads := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/%s/threads=%d", s.name, kc.name, threads), func(b *testing.B) {
					if kc.skip != "" {
						b.Skip(kc.skip)
					}
					defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(threads))
					benchGemm(b, kc.k, s)
				})
			}
		}
	}
}

func benchGemm(b *testing.B, kern Kernel32, s benchShape) {
	rng := rand.New(rand.NewPCG(1, 1))
	a := make([]float32, s.m*s.k)
	bb := make([]float32, s.k*s.n)
	c := make([]float32, s.m*s.n)
	for _, x := range [][]float32{a, bb} {
		for i := range x {
			x[i] = float32(rng.Float64()*2 - 1)
		}
	}
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
		b.ReportMetric(flops/cpu/1e9, "GFLOP/cpu-s")
	}
}

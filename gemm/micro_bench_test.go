package gemm

import (
	"fmt"
	"testing"
)

// BenchmarkMicroKernel measures a micro-kernel alone on slivers that stay
// in L1: the ceiling of the blocked driver.
func BenchmarkMicroKernel(b *testing.B) {
	for _, kc := range kernelCases() {
		if kc.name != "avx2" && kc.name != "avx512" {
			continue
		}
		b.Run(kc.name, func(b *testing.B) {
			if kc.skip != "" {
				b.Skip(kc.skip)
			}
			g := kc.k.(*Blocked)
			for _, depth := range []int{64, 256} {
				b.Run(fmt.Sprint("kc=", depth), func(b *testing.B) {
					a := grow(nil, g.mr*depth)
					bb := grow(nil, g.nr*depth)
					c := grow(nil, g.mr*g.nr)
					for i := range a {
						a[i] = 1
					}
					for i := range bb {
						bb[i] = 1
					}
					for i := 0; i < b.N; i++ {
						g.micro(depth, &a[0], &bb[0], &c[0], g.nr, 1, 1)
					}
					b.ReportMetric(2*float64(g.mr*g.nr*depth)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
				})
			}
		})
	}
}

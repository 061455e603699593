//go:build !unix

package dataset

// cpuSeconds is not measured outside unix; the CPU-time metric reads 0.
func cpuSeconds() float64 { return 0 }

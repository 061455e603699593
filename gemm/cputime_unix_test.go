//go:build unix

package gemm

import "syscall"

// cpuSeconds is the CPU time (user + system) the process has used: on a
// machine shared with other work, flops per CPU second measure a kernel
// more steadily than flops per wall second.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

//go:build unix

package dataset

import "syscall"

// cpuSeconds is the CPU time (user + system) the process has used: on a
// machine shared with other work, images per CPU second measure a decoder
// more steadily than images per wall second.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

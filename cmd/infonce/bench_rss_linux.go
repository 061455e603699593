package main

import (
	"os"
	"syscall"
)

// processRSS is the peak resident set size of an exited process in bytes
// (getrusage's ru_maxrss, which Linux gives in kilobytes).
func processRSS(ps *os.ProcessState) int64 {
	if ps == nil {
		return 0
	}
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	return int64(ru.Maxrss) * 1024
}

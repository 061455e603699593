//go:build race

package allreduce

import (
	"runtime"
	"unsafe"
)

// The assembly kernels are invisible to the race detector; these tell it
// which memory they touch.
func raceRead(p unsafe.Pointer, n int)  { runtime.RaceReadRange(p, n) }
func raceWrite(p unsafe.Pointer, n int) { runtime.RaceWriteRange(p, n) }
func raceReleaseMerge(p unsafe.Pointer) { runtime.RaceReleaseMerge(p) }
func raceAcquire(p unsafe.Pointer)      { runtime.RaceAcquire(p) }

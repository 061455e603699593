//go:build race

package race

import (
	"runtime"
	"unsafe"
)

// Read tells the detector that n bytes at p are read.
func Read(p unsafe.Pointer, n int) { runtime.RaceReadRange(p, n) }

// Write tells the detector that n bytes at p are written.
func Write(p unsafe.Pointer, n int) { runtime.RaceWriteRange(p, n) }

// ReleaseMerge is runtime.RaceReleaseMerge.
func ReleaseMerge(p unsafe.Pointer) { runtime.RaceReleaseMerge(p) }

// Acquire is runtime.RaceAcquire.
func Acquire(p unsafe.Pointer) { runtime.RaceAcquire(p) }

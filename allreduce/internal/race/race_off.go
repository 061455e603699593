//go:build !race

package race

import "unsafe"

// Read tells the detector that n bytes at p are read.
func Read(unsafe.Pointer, int) {}

// Write tells the detector that n bytes at p are written.
func Write(unsafe.Pointer, int) {}

// ReleaseMerge is runtime.RaceReleaseMerge.
func ReleaseMerge(unsafe.Pointer) {}

// Acquire is runtime.RaceAcquire.
func Acquire(unsafe.Pointer) {}

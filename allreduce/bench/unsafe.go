package bench

import "unsafe"

// unsafeBytes views x as its bytes in memory.
func unsafeBytes(x []float32) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(x))), 4*len(x))
}

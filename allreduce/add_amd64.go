package allreduce

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

//go:noescape
func addF32AVX2(dst, src *float32, n int)

//go:noescape
func addF64AVX2(dst, src *float64, n int)

//go:noescape
func addBF16AVX2(dst *float32, src *uint16, n int)

var useAVX2 = cpu.X86.HasAVX2

// vectorPrefix runs the AVX2 kernel over the longest prefix of dst and src
// (same length) that is a multiple of block elements, telling the race
// detector what the assembly reads and writes, and returns its length: the
// caller does the rest in Go. Without AVX2 it returns 0.
func vectorPrefix[D, S any](dst []D, src []S, block int, kernel func(*D, *S, int)) int {
	if !useAVX2 {
		return 0
	}
	n := len(dst) &^ (block - 1)
	if n == 0 {
		return 0
	}
	var d D
	var s S
	raceRead(unsafe.Pointer(&src[0]), int(unsafe.Sizeof(s))*n)
	raceWrite(unsafe.Pointer(&dst[0]), int(unsafe.Sizeof(d))*n)
	kernel(&dst[0], &src[0], n)
	return n
}

// addF32 implements dst += src.
func addF32(dst, src []float32) {
	src = src[:len(dst)]
	n := vectorPrefix(dst, src, 32, addF32AVX2)
	addF32Go(dst[n:], src[n:])
}

// addF64 implements dst += src.
func addF64(dst, src []float64) {
	src = src[:len(dst)]
	n := vectorPrefix(dst, src, 16, addF64AVX2)
	addF64Go(dst[n:], src[n:])
}

// addBF16 implements dst += widen(src) for bfloat16 src.
func addBF16(dst []float32, src []uint16) {
	src = src[:len(dst)]
	n := vectorPrefix(dst, src, 16, addBF16AVX2)
	addBF16Go(dst[n:], src[n:])
}

//go:noescape
func encodeBF16AVX2(dst *uint16, src *float32, n int)

//go:noescape
func decodeBF16AVX2(dst *float32, src *uint16, n int)

// encodeBF16 writes src as bfloat16 into dst (len(dst) >= 2*len(src)) and
// returns the bytes written.
func encodeBF16(dst []byte, src []float32) []byte {
	out := bytesU16(dst[:2*len(src)])
	n := vectorPrefix(out, src, 16, encodeBF16AVX2)
	encodeBF16Go(out[n:], src[n:])
	return dst[:2*len(src)]
}

// decodeBF16 implements dst = widen(src).
func decodeBF16(dst []float32, src []uint16) {
	src = src[:len(dst)]
	n := vectorPrefix(dst, src, 16, decodeBF16AVX2)
	decodeBF16Go(dst[n:], src[n:])
}

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

// addF32 implements dst += src.
func addF32(dst, src []float32) {
	src = src[:len(dst)]
	n := 0
	if useAVX2 {
		n = len(dst) &^ 31
		if n > 0 {
			raceRead(unsafe.Pointer(&src[0]), 4*n)
			raceWrite(unsafe.Pointer(&dst[0]), 4*n)
			addF32AVX2(&dst[0], &src[0], n)
		}
	}
	addF32Go(dst[n:], src[n:])
}

// addF64 implements dst += src.
func addF64(dst, src []float64) {
	src = src[:len(dst)]
	n := 0
	if useAVX2 {
		n = len(dst) &^ 15
		if n > 0 {
			raceRead(unsafe.Pointer(&src[0]), 8*n)
			raceWrite(unsafe.Pointer(&dst[0]), 8*n)
			addF64AVX2(&dst[0], &src[0], n)
		}
	}
	addF64Go(dst[n:], src[n:])
}

// addBF16 implements dst += widen(src) for bfloat16 src.
func addBF16(dst []float32, src []uint16) {
	src = src[:len(dst)]
	n := 0
	if useAVX2 {
		n = len(dst) &^ 15
		if n > 0 {
			raceRead(unsafe.Pointer(&src[0]), 2*n)
			raceWrite(unsafe.Pointer(&dst[0]), 4*n)
			addBF16AVX2(&dst[0], &src[0], n)
		}
	}
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
	n := 0
	if useAVX2 {
		n = len(src) &^ 15
		if n > 0 {
			raceRead(unsafe.Pointer(&src[0]), 4*n)
			raceWrite(unsafe.Pointer(&out[0]), 2*n)
			encodeBF16AVX2(&out[0], &src[0], n)
		}
	}
	encodeBF16Go(out[n:], src[n:])
	return dst[:2*len(src)]
}

// decodeBF16 implements dst = widen(src).
func decodeBF16(dst []float32, src []uint16) {
	src = src[:len(dst)]
	n := 0
	if useAVX2 {
		n = len(dst) &^ 15
		if n > 0 {
			raceRead(unsafe.Pointer(&src[0]), 2*n)
			raceWrite(unsafe.Pointer(&dst[0]), 4*n)
			decodeBF16AVX2(&dst[0], &src[0], n)
		}
	}
	decodeBF16Go(dst[n:], src[n:])
}

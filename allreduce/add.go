package allreduce

import (
	"unsafe"

	"github.com/infonce/infonce/allreduce/internal/race"
	"github.com/infonce/infonce/vec"
)

// The element-wise sums and conversions of a pass go through package vec
// (AVX2 where the CPU has it). Its assembly is invisible to the race
// detector, so each call first tells the detector what it reads and writes.

// addF32 implements dst += src.
func addF32(dst, src []float32) {
	src = src[:len(dst)]
	if len(dst) == 0 {
		return
	}
	race.Read(unsafe.Pointer(&src[0]), 4*len(src))
	race.Write(unsafe.Pointer(&dst[0]), 4*len(dst))
	vec.Add(dst, src)
}

// addF64 implements dst += src (float64 collectives are for exact checks,
// not for speed).
func addF64(dst, src []float64) { addF64Go(dst, src) }

// addBF16 implements dst += widen(src) for bfloat16 src.
func addBF16(dst []float32, src []uint16) {
	src = src[:len(dst)]
	if len(dst) == 0 {
		return
	}
	race.Read(unsafe.Pointer(&src[0]), 2*len(src))
	race.Write(unsafe.Pointer(&dst[0]), 4*len(dst))
	vec.AddBF16(dst, src)
}

// encodeBF16 writes src as bfloat16 into dst (len(dst) >= 2*len(src)) and
// returns the bytes written.
func encodeBF16(dst []byte, src []float32) []byte {
	out := bytesU16(dst[:2*len(src)])
	if len(src) > 0 {
		race.Read(unsafe.Pointer(&src[0]), 4*len(src))
		race.Write(unsafe.Pointer(&out[0]), 2*len(out))
		vec.ToBF16(out, src)
	}
	return dst[:2*len(src)]
}

// decodeBF16 implements dst = widen(src).
func decodeBF16(dst []float32, src []uint16) {
	src = src[:len(dst)]
	if len(dst) == 0 {
		return
	}
	race.Read(unsafe.Pointer(&src[0]), 2*len(src))
	race.Write(unsafe.Pointer(&dst[0]), 4*len(dst))
	vec.FromBF16(dst, src)
}

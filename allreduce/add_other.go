//go:build !amd64

package allreduce

// addF32 implements dst += src.
func addF32(dst, src []float32) { addF32Go(dst, src) }

// addF64 implements dst += src.
func addF64(dst, src []float64) { addF64Go(dst, src) }

// addBF16 implements dst += widen(src) for bfloat16 src.
func addBF16(dst []float32, src []uint16) { addBF16Go(dst, src) }

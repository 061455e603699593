//go:build !amd64

package allreduce

// addF32 implements dst += src.
func addF32(dst, src []float32) { addF32Go(dst, src) }

// addF64 implements dst += src.
func addF64(dst, src []float64) { addF64Go(dst, src) }

// addBF16 implements dst += widen(src) for bfloat16 src.
func addBF16(dst []float32, src []uint16) { addBF16Go(dst, src) }

// encodeBF16 writes src as bfloat16 into dst (len(dst) >= 2*len(src)) and
// returns the bytes written.
func encodeBF16(dst []byte, src []float32) []byte {
	encodeBF16Go(bytesU16(dst[:2*len(src)]), src)
	return dst[:2*len(src)]
}

// decodeBF16 implements dst = widen(src).
func decodeBF16(dst []float32, src []uint16) { decodeBF16Go(dst, src) }

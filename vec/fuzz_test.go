package vec

import (
	"encoding/binary"
	"math"
	"testing"
)

// floats decodes little-endian float32s from data.
func floats(data []byte) []float32 {
	x := make([]float32, len(data)/4)
	for i := range x {
		x[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
	}
	return x
}

// FuzzExp feeds arbitrary bit patterns (NaNs, infinities, subnormals) to
// the exponential kernels of every implementation and compares each entry
// with math.Exp.
func FuzzExp(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0x80, 0x7f, 0, 0, 0x80, 0xff, 1, 0, 0, 0}, float32(0), float32(1))
	f.Add(make([]byte, 4*19), float32(math.Inf(-1)), float32(0.5))
	f.Add([]byte{0xff, 0xff, 0x7f, 0x7f, 0xff, 0xff, 0x7f, 0xff, 0, 0, 0xc0, 0x7f}, float32(88), float32(3))
	f.Fuzz(func(t *testing.T, data []byte, shift, scale float32) {
		x := floats(data)
		for _, k := range implementations() {
			dst := make([]float32, len(x))
			k.expScale(dst, x, shift, 1)
			for i, v := range x {
				if d := ulps(dst[i], exp64(v, shift)); d > 2 {
					t.Fatalf("%s: exp(%v − %v) = %v, want %v", k.name, v, shift, dst[i], exp64(v, shift))
				}
			}
			// The pair kernel against the same reference, with the
			// row reversed as the second shift vector.
			b := make([]float32, len(x))
			for i := range b {
				b[i] = x[len(x)-1-i]
			}
			k.expPairScale(dst, x, shift, b, scale)
			for i, v := range x {
				want := float32(float64(scale) * (float64(exp64(v, shift)) + float64(exp64(v, b[i]))))
				got := dst[i]
				if want != want || got != got {
					if (want != want) != (got != got) && !math.IsInf(float64(scale), 0) && scale != 0 {
						t.Fatalf("%s: pair(%v, %v, %v)·%v = %v, want %v", k.name, v, shift, b[i], scale, got, want)
					}
					continue
				}
				if d := ulps(got, want); d > 6 && math.Abs(float64(got-want)) > 1e-44 {
					t.Fatalf("%s: pair(%v, %v, %v)·%v = %v, want %v", k.name, v, shift, b[i], scale, got, want)
				}
			}
			if got, want := k.max(x), maxGo(x); got != want {
				t.Fatalf("%s: Max = %v, want %v", k.name, got, want)
			}
		}
	})
}

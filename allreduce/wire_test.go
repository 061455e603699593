package allreduce

import (
	"math"
	"testing"
)

func TestAddKernelsMatchScalar(t *testing.T) {
	rng := newRand(3)
	for _, n := range []int{0, 1, 15, 16, 31, 32, 33, 100, 1027} {
		a, b := make([]float32, n), make([]float32, n)
		fill32(rng, a)
		fill32(rng, b)
		want := append([]float32(nil), a...)
		for i := range want {
			want[i] += b[i]
		}
		addF32(a, b)
		h := make([]uint16, n)
		wantB := append([]float32(nil), a...)
		for i := range h {
			h[i] = toBF16(b[i])
			wantB[i] += fromBF16(h[i])
		}
		got := append([]float32(nil), a...)
		addBF16(got, h)
		a64, b64 := make([]float64, n), make([]float64, n)
		for i := range a64 {
			a64[i], b64[i] = rng.NormFloat64(), rng.NormFloat64()
		}
		want64 := append([]float64(nil), a64...)
		for i := range want64 {
			want64[i] += b64[i]
		}
		addF64(a64, b64)
		for i := range n {
			if a[i] != want[i] || got[i] != wantB[i] || a64[i] != want64[i] {
				t.Fatalf("n=%d elem %d: f32 %v/%v bf16 %v/%v f64 %v/%v", n, i, a[i], want[i], got[i], wantB[i], a64[i], want64[i])
			}
		}
	}
}

func TestBFloat16Rounding(t *testing.T) {
	tests := []struct {
		in   float32
		want float32
	}{
		{1, 1},
		{1 + 1.0/256, 1},           // tie: round to even (1.0)
		{1 + 3.0/256, 1 + 4.0/256}, // tie: round to even (up)
		{1 + 1.0/256 + 1.0/4096, 1 + 2.0/256},
		{-2.5, -2.5},
		{float32(math.Inf(1)), float32(math.Inf(1))},
		{0, 0},
	}
	for _, tc := range tests {
		if got := fromBF16(toBF16(tc.in)); got != tc.want {
			t.Errorf("bf16(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if nan := fromBF16(toBF16(float32(math.NaN()))); !math.IsNaN(float64(nan)) {
		t.Errorf("NaN became %v", nan)
	}
	// relative error at most 2^-8 over many values
	rng := newRand(5)
	for range 100000 {
		x := float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(20)-10)))
		if r := math.Abs(float64(fromBF16(toBF16(x))-x)) / math.Abs(float64(x)); r > bf16UnitRoundoff {
			t.Fatalf("bf16(%v) relative error %g > 2^-8", x, r)
		}
	}
}

func TestBFloat16KernelsMatchScalar(t *testing.T) {
	rng := newRand(9)
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 1 + 1.0/256, 1 + 3.0/256, float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), math.Float32frombits(0x7f800001), math.Float32frombits(0xffffffff), math.MaxFloat32, math.SmallestNonzeroFloat32}
	for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 100, 1001} {
		src := make([]float32, n)
		fill32(rng, src)
		for i := range src {
			if i < len(special) {
				src[i] = special[i]
			}
			if i%5 == 1 {
				src[i] = math.Float32frombits(rng.Uint32())
			}
		}
		b := encodeBF16(make([]byte, 2*n), src)
		got := bytesU16(b)
		dec := make([]float32, n)
		decodeBF16(dec, got)
		for i := range n {
			if want := toBF16(src[i]); got[i] != want {
				t.Fatalf("n=%d elem %d (%#x): encoded %#x, want %#x", n, i, math.Float32bits(src[i]), got[i], want)
			}
			if math.Float32bits(dec[i]) != uint32(got[i])<<16 {
				t.Fatalf("n=%d elem %d: decoded %#x from %#x", n, i, math.Float32bits(dec[i]), got[i])
			}
		}
	}
}

package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The float32 element-wise paths (ReLU, the bias gradient of Linear and
// L2Normalize go through package vec) agree with the float64 layers on the
// same inputs: ReLU exactly, the others to float32 rounding.
func TestFloat32LayersFollowFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, width := range []int{1, 7, 8, 13, 64, 100} {
		const b = 9
		x32, dy32 := make([]float32, b*width), make([]float32, b*width)
		for i := range x32 {
			x32[i], dy32[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		x32[0] = 0 // the kink: no gradient flows at x = 0
		x64, dy64 := widen(x32), widen(dy32)

		r32, r64 := ReLU[float32]{N: width}, ReLU[float64]{N: width}
		y32, err := r32.Forward(x32, b)
		if err != nil {
			t.Fatal(err)
		}
		y64, _ := r64.Forward(x64, b)
		dx32, err := r32.Backward(dy32)
		if err != nil {
			t.Fatal(err)
		}
		dx64, _ := r64.Backward(dy64)
		for i := range y64 {
			if float64(y32[i]) != y64[i] || float64(dx32[i]) != dx64[i] {
				t.Fatalf("width %d, element %d: ReLU float32 (%v, %v), float64 (%v, %v)", width, i, y32[i], dx32[i], y64[i], dx64[i])
			}
		}

		n32, n64 := L2Normalize[float32]{N: width}, L2Normalize[float64]{N: width}
		z32, err := n32.Forward(x32, b)
		if err != nil {
			t.Fatal(err)
		}
		z64, _ := n64.Forward(x64, b)
		dz32, err := n32.Backward(dy32)
		if err != nil {
			t.Fatal(err)
		}
		dz64, _ := n64.Backward(dy64)
		for i := range z64 {
			if d := math.Abs(float64(z32[i]) - z64[i]); d > 2e-7 {
				t.Fatalf("width %d: L2Normalize y[%d] float32 %v, float64 %v", width, i, z32[i], z64[i])
			}
			if d := math.Abs(float64(dz32[i]) - dz64[i]); d > 1e-6*(1+math.Abs(dz64[i])) {
				t.Fatalf("width %d: L2Normalize dx[%d] float32 %v, float64 %v", width, i, dz32[i], dz64[i])
			}
		}

		const in = 3
		l32 := Linear[float32]{In: in, Out: width, W: make([]float32, in*width), B: make([]float32, width),
			DW: make([]float32, in*width), DB: make([]float32, width)}
		l64 := Linear[float64]{In: in, Out: width, W: make([]float64, in*width), B: make([]float64, width),
			DW: make([]float64, in*width), DB: make([]float64, width)}
		for j := range l32.DB {
			l32.DB[j] = float32(j) // Backward accumulates into the gradient
			l64.DB[j] = float64(j)
		}
		if _, err := l32.Forward(make([]float32, b*in), b); err != nil {
			t.Fatal(err)
		}
		if _, err := l64.Forward(make([]float64, b*in), b); err != nil {
			t.Fatal(err)
		}
		if _, err := l32.Backward(dy32); err != nil {
			t.Fatal(err)
		}
		if _, err := l64.Backward(dy64); err != nil {
			t.Fatal(err)
		}
		for j := range l64.DB {
			if d := math.Abs(float64(l32.DB[j]) - l64.DB[j]); d > 1e-5*(1+math.Abs(l64.DB[j])) {
				t.Fatalf("width %d: DB[%d] float32 %v, float64 %v", width, j, l32.DB[j], l64.DB[j])
			}
		}
	}
}

func widen(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

package model

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// TestConvParallelSameBits runs a float32 convolution's Forward and
// Backward, whose im2col and col2im split their rows and channels over
// goroutines, with GOMAXPROCS 1, 2 and 3 and requires the same bits of y,
// ∂L/∂x and ∂L/∂W every time.
func TestConvParallelSameBits(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, s := range []struct{ cin, cout, h, w, kh, kw, stride, pad int }{
		{8, 6, 48, 40, 3, 3, 1, 1}, {8, 6, 48, 40, 3, 3, 2, 1}, {3, 5, 64, 64, 3, 3, 1, 1},
	} {
		var ref [3][]float32
		for _, procs := range []int{1, 2, 3} {
			runtime.GOMAXPROCS(procs)
			bl := &builder[float32]{rng: rand.New(rand.NewPCG(5, 9))}
			c := bl.conv(s.cin, s.cout, s.h, s.w, s.kh, s.kw, s.stride, s.pad)
			const b = 2
			hw := c.OutH() * c.OutW()
			if procs > 1 && c.par.numParts(s.cin*s.kh*s.kw, convParallelMin/hw) < 2 {
				t.Fatalf("%+v: im2col would not split with GOMAXPROCS %d", s, procs)
			}
			x := randT[float32](bl.rng, b*s.cin*s.h*s.w)
			dy := randT[float32](bl.rng, b*s.cout*hw)
			y, err := c.Forward(x, b)
			if err != nil {
				t.Fatal(err)
			}
			y = append([]float32(nil), y...)
			dx, err := c.Backward(dy)
			if err != nil {
				t.Fatal(err)
			}
			got := [3][]float32{y, append([]float32(nil), dx...), append([]float32(nil), c.DWeight...)}
			if procs == 1 {
				ref = got
				continue
			}
			for i, name := range []string{"y", "∂L/∂x", "∂L/∂W"} {
				for j := range got[i] {
					if math.Float32bits(got[i][j]) != math.Float32bits(ref[i][j]) {
						t.Fatalf("%+v, GOMAXPROCS %d: %s[%d] = %v, want %v as with one", s, procs, name, j, got[i][j], ref[i][j])
					}
				}
			}
		}
	}
}

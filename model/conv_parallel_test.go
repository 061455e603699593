package model

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// TestConvParallelSameBits runs a float32 convolution's Forward and
// Backward, which split the images and the blocks of images over
// goroutines, with GOMAXPROCS 1, 2 and 3 and requires the same bits of y,
// ∂L/∂x and ∂L/∂W every time. The images are large enough to be built in
// several chunks of output rows, and the batch makes several blocks.
func TestConvParallelSameBits(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, s := range []struct{ cin, cout, h, w, kh, kw, stride, pad int }{
		{8, 6, 48, 40, 3, 3, 1, 1}, {8, 6, 48, 40, 3, 3, 2, 1}, {3, 5, 64, 64, 3, 3, 1, 1}, {64, 4, 24, 24, 3, 3, 1, 1}, {5, 3, 9, 9, 1, 1, 1, 0},
	} {
		var ref [3][]float32
		for _, procs := range []int{1, 2, 3} {
			runtime.GOMAXPROCS(procs)
			bl := &builder[float32]{rng: rand.New(rand.NewPCG(5, 9))}
			c := bl.conv(s.cin, s.cout, s.h, s.w, s.kh, s.kw, s.stride, s.pad)
			const b = 2*convBlockImages + 3
			hw := c.OutH() * c.OutW()
			if procs > 1 && c.par.numParts(b/convBlockImages+1, 1) != procs {
				t.Fatalf("%+v: the blocks would not split over GOMAXPROCS %d", s, procs)
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

// TestConvChunksMatchDirect checks y, ∂L/∂x and ∂L/∂W of convolutions
// whose X_col is built in several chunks of output rows, over more than
// one block of images, against the direct sums in float64.
func TestConvChunksMatchDirect(t *testing.T) {
	for _, s := range []struct{ cin, cout, h, w, k, stride, pad int }{
		{64, 3, 20, 24, 3, 1, 1}, {128, 2, 30, 22, 3, 2, 1}, {100, 2, 13, 12, 5, 1, 2},
	} {
		bl := &builder[float64]{rng: rand.New(rand.NewPCG(11, 13))}
		c := bl.conv(s.cin, s.cout, s.h, s.w, s.k, s.k, s.stride, s.pad)
		if c.chunkRows() >= c.OutH() {
			t.Fatalf("%+v: X_col fits one chunk; the test needs several", s)
		}
		b := convBlockImages + 2
		ho, wo := c.OutH(), c.OutW()
		x, dy := randVec(bl.rng, b*s.cin*s.h*s.w), randVec(bl.rng, b*s.cout*ho*wo)
		y, err := c.Forward(x, b)
		if err != nil {
			t.Fatal(err)
		}
		dx, err := c.Backward(dy)
		if err != nil {
			t.Fatal(err)
		}
		wantY := make([]float64, len(y))
		wantDX := make([]float64, len(x))
		wantDW := make([]float64, len(c.Weight))
		for n := 0; n < b; n++ {
			for o := 0; o < s.cout; o++ {
				for i := 0; i < ho; i++ {
					for j := 0; j < wo; j++ {
						yi := ((n*s.cout+o)*ho+i)*wo + j
						wantY[yi] = c.Bias[o]
						for ci := 0; ci < s.cin; ci++ {
							for u := 0; u < s.k; u++ {
								for v := 0; v < s.k; v++ {
									yy, xx := i*s.stride-s.pad+u, j*s.stride-s.pad+v
									if yy < 0 || yy >= s.h || xx < 0 || xx >= s.w {
										continue
									}
									wi, xi := ((o*s.cin+ci)*s.k+u)*s.k+v, ((n*s.cin+ci)*s.h+yy)*s.w+xx
									wantY[yi] += c.Weight[wi] * x[xi]
									wantDW[wi] += dy[yi] * x[xi]
									wantDX[xi] += dy[yi] * c.Weight[wi]
								}
							}
						}
					}
				}
			}
		}
		for _, r := range []struct {
			name      string
			got, want []float64
		}{{"y", y, wantY}, {"∂L/∂x", dx, wantDX}, {"∂L/∂W", c.DWeight, wantDW}} {
			if e := relErr(r.got, r.want); e > 1e-12 {
				t.Errorf("%+v: %s: relative error %.3g against the direct sums", s, r.name, e)
			}
		}
	}
}

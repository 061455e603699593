package model

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkStep measures one training step of the default towers in float32
// (ZeroGrad, Forward and Backward of the image and the text tower) on a batch
// of 256 and reports samples per second.
func BenchmarkStep(bm *testing.B) {
	cfg := DefaultConfig()
	cfg.TextVocab = 1000
	m, err := New[float32](cfg, 1)
	if err != nil {
		bm.Fatal(err)
	}
	const b = 256
	rng := rand.New(rand.NewPCG(1, 1))
	x := make([]float32, b*cfg.ImageIn)
	for i := range x {
		x[i] = rng.Float32()
	}
	ids := make([]int32, 8*b)
	for i := range ids {
		ids[i] = int32(rng.IntN(cfg.TextVocab))
	}
	offsets := make([]int32, b)
	for i := range offsets {
		offsets[i] = int32(8 * i)
	}
	dEmb := make([]float32, b*cfg.Dim)
	for i := range dEmb {
		dEmb[i] = float32(rng.NormFloat64()) / 100
	}
	step := func() {
		m.P.ZeroGrad()
		if _, err := m.Image.Forward(x, b); err != nil {
			bm.Fatal(err)
		}
		if err := m.Image.Backward(dEmb); err != nil {
			bm.Fatal(err)
		}
		if _, err := m.Text.Forward(ids, offsets, b); err != nil {
			bm.Fatal(err)
		}
		if err := m.Text.Backward(dEmb); err != nil {
			bm.Fatal(err)
		}
	}
	step() // allocate the caches
	bm.ReportAllocs()
	bm.ResetTimer()
	for bm.Loop() {
		step()
	}
	bm.ReportMetric(float64(b*bm.N)/bm.Elapsed().Seconds(), "samples/s")
}

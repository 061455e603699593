package model

import (
	"math"
	"testing"
)

// FuzzTemporalForward feeds arbitrary rows (each byte a value in
// [−4, 4), so every input is finite, masks included) and batch sizes to
// the temporal action tower: it must either return an error or unit-norm
// embeddings whose Backward succeeds, and never panic.
func FuzzTemporalForward(f *testing.F) {
	f.Add([]byte{}, 0)
	f.Add(make([]byte, 18), 1)
	f.Add([]byte{200, 10, 30, 40, 128, 129, 255, 0, 5, 6, 7, 8, 9, 10, 160, 160, 0, 160, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 160, 160, 160, 160, 160, 1, 2, 3}, 2)
	f.Add([]byte{1, 2, 3}, 1)
	cfg := temporalConfig(ActGELU, 3)
	m, err := New[float32](cfg, 1)
	if err != nil {
		f.Fatal(err)
	}
	m.Action.(*TemporalTower[float32]).InputGrad = true
	f.Fuzz(func(t *testing.T, raw []byte, b int) {
		if b < -1 || b > 64 || len(raw) > 64*cfg.ActionIn {
			t.Skip("outside the fuzzed range: batch size in [-1, 64], at most 64 rows")
		}
		x := make([]float32, len(raw))
		for i, v := range raw {
			x[i] = float32(int(v)-128) / 32
		}
		w, err := m.Action.Forward(Rows(x, b))
		if err != nil {
			return
		}
		for i := 0; i < b; i++ {
			var s float64
			for _, e := range w[i*cfg.Dim : (i+1)*cfg.Dim] {
				s += float64(e) * float64(e)
			}
			if math.IsNaN(s) || s > 1+1e-5 {
				t.Fatalf("row %d: ‖w‖² = %v", i, s)
			}
		}
		if err := m.Action.Backward(w); err != nil {
			t.Fatalf("Backward after a successful Forward: %v", err)
		}
	})
}

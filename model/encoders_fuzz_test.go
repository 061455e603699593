package model

import (
	"encoding/binary"
	"math"
	"testing"
)

// FuzzTransformerForward feeds arbitrary ids and offsets to the
// transformer text tower: it must either return an error or unit-norm
// embeddings, and never panic.
func FuzzTransformerForward(f *testing.F) {
	f.Add([]byte{7, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0}, []byte{0, 0, 0, 0}, 1)
	f.Add([]byte{7, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0}, []byte{0, 0, 0, 0, 2, 0, 0, 0}, 2)
	f.Add([]byte{255, 255, 255, 255}, []byte{0, 0, 0, 0}, 1)
	f.Add([]byte{}, []byte{}, 0)
	cfg := encoderConfigs()["vit-cls+transformer-eot"]
	m, err := New[float32](cfg, 1)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, rawIDs, rawOffsets []byte, b int) {
		if b < -1 || b > 64 || len(rawIDs) > 1024 {
			t.Skip("outside the fuzzed range: batch size in [-1, 64], at most 256 ids")
		}
		ints := func(raw []byte) []int32 {
			v := make([]int32, len(raw)/4)
			for i := range v {
				v[i] = int32(binary.LittleEndian.Uint32(raw[4*i:]))
			}
			return v
		}
		v, err := m.Text.Forward(Bags[float32](ints(rawIDs), ints(rawOffsets), b))
		if err != nil {
			return
		}
		for i := 0; i < b; i++ {
			var s float64
			for _, e := range v[i*cfg.Dim : (i+1)*cfg.Dim] {
				s += float64(e) * float64(e)
			}
			if math.IsNaN(s) || s > 1+1e-5 {
				t.Fatalf("row %d: ‖v‖² = %v", i, s)
			}
		}
		if err := m.Text.Backward(v); err != nil {
			t.Fatalf("Backward after a successful Forward: %v", err)
		}
	})
}

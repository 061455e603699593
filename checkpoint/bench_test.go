package checkpoint

import (
	"context"
	"math/rand/v2"
	"testing"
)

// benchParams is the size of the default model's flat parameter buffer.
const benchParams = 600_000

// benchBlobs returns a parameter buffer and two Adam moment buffers of
// benchParams float32 each (2.4 MB apiece), filled like mid-training state.
func benchBlobs() []Blob {
	r := rand.New(rand.NewPCG(1, 2))
	theta := make([]float32, benchParams)
	m := make([]float32, benchParams)
	v := make([]float32, benchParams)
	for i := range theta {
		theta[i] = float32(r.NormFloat64() * 0.02)
		g := r.NormFloat64() * 1e-3
		m[i] = float32(0.1 * g)
		v[i] = float32(0.001 * g * g)
	}
	return []Blob{
		{Name: "params", Data: Float32Bytes(theta)},
		{Name: "adam_m", Data: Float32Bytes(m)},
		{Name: "adam_v", Data: Float32Bytes(v)},
	}
}

// BenchmarkSave measures one durable Save (compress, write, fsync, rename,
// prune to Keep=3) of the default model's parameters and Adam state.
func BenchmarkSave(b *testing.B) {
	blobs := benchBlobs()
	s := &Store{Root: b.TempDir(), Keep: 3}
	ctx := context.Background()
	b.SetBytes(int64(3 * 4 * benchParams))
	b.ResetTimer()
	step := int64(0)
	for b.Loop() {
		if _, err := s.Save(ctx, testManifest(step), blobs); err != nil {
			b.Fatal(err)
		}
		step++
	}
}

// BenchmarkLoad measures Load (read, SHA-256, decompress) of the same state.
func BenchmarkLoad(b *testing.B) {
	s := &Store{Root: b.TempDir(), Keep: 3}
	ctx := context.Background()
	dir, err := s.Save(ctx, testManifest(1), benchBlobs())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(3 * 4 * benchParams))
	for b.Loop() {
		if _, err := Load(ctx, dir); err != nil {
			b.Fatal(err)
		}
	}
}

package eval

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkRetrieval measures both directions of retrieval among 10,000
// pairs of 256-dimensional float32 embeddings.
func BenchmarkRetrieval(b *testing.B) {
	const n, d = 10000, 256
	rng := rand.New(rand.NewPCG(1, 2))
	img, txt := to32(unitRows(rng, n, d)), to32(unitRows(rng, n, d))
	labels := make([]int, n)
	for i := range labels {
		labels[i] = i % 10
	}
	for b.Loop() {
		Retrieval(img, txt, n, d, labels)
	}
}

// BenchmarkLinearProbe measures the default probe on 60,000×256 float32
// features in 10 Gaussian clusters, scored on 10,000 test rows.
func BenchmarkLinearProbe(b *testing.B) {
	const d, k = 256, 10
	rng := rand.New(rand.NewPCG(3, 4))
	means := clusterMeans(rng, d, k, 0.2)
	trX, trY := clusters(rng, means, 60000, d, k, 1, 0)
	teX, teY := clusters(rng, means, 10000, d, k, 1, 0)
	for b.Loop() {
		if _, err := LinearProbe(trX, trY, teX, teY, d, k, DefaultProbeConfig()); err != nil {
			b.Fatal(err)
		}
	}
}

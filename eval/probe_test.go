package eval

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// clusters draws n points of d dimensions from k Gaussian clusters with unit
// variance around means spread by sep, labelled by cluster, scaled by scale
// and shifted by shift (to check the standardisation).
func clusters(rng *rand.Rand, means []float64, n, d, k int, scale, shift float64) ([]float32, []int) {
	x := make([]float32, n*d)
	y := make([]int, n)
	for i := range n {
		c := rng.IntN(k)
		y[i] = c
		for j := range d {
			x[i*d+j] = float32(scale*(means[c*d+j]+rng.NormFloat64()) + shift)
		}
	}
	return x, y
}

func clusterMeans(rng *rand.Rand, d, k int, sep float64) []float64 {
	m := make([]float64, k*d)
	for i := range m {
		m[i] = sep * rng.NormFloat64()
	}
	return m
}

func TestLinearProbeSeparableClusters(t *testing.T) {
	const d, k = 20, 5
	rng := rand.New(rand.NewPCG(1, 1))
	means := clusterMeans(rng, d, k, 1.5)
	cfg := DefaultProbeConfig()
	cfg.Epochs = 10
	cases := []struct {
		name         string
		scale, shift float64
	}{
		{"unit scale", 1, 0},
		{"large scale and offset", 1000, 5e4},
		{"tiny scale", 1e-3, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(2, 2))
			trX, trY := clusters(rng, means, 2000, d, k, c.scale, c.shift)
			teX, teY := clusters(rng, means, 500, d, k, c.scale, c.shift)
			acc, err := LinearProbe(trX, trY, teX, teY, d, k, cfg)
			if err != nil {
				t.Fatal(err)
			}
			// The clusters are 1.5·√2·√20 ≈ 9.5 standard deviations apart on
			// average: a linear classifier separates nearly all points.
			if acc < 0.97 {
				t.Errorf("accuracy %v, want ≥ 0.97", acc)
			}
		})
	}
}

func TestLinearProbeRandomLabelsAtChance(t *testing.T) {
	const d, k = 10, 4
	rng := rand.New(rand.NewPCG(3, 3))
	means := clusterMeans(rng, d, k, 2)
	trX, trY := clusters(rng, means, 1000, d, k, 1, 0)
	teX, teY := clusters(rng, means, 1000, d, k, 1, 0)
	for i := range teY {
		teY[i] = rng.IntN(k) // test labels unrelated to the features
	}
	acc, err := LinearProbe(trX, trY, teX, teY, d, k, DefaultProbeConfig())
	if err != nil {
		t.Fatal(err)
	}
	if acc > 0.33 {
		t.Errorf("accuracy %v on random labels, want about 1/%d", acc, k)
	}
}

func TestLinearProbeDeterministic(t *testing.T) {
	const d, k = 8, 3
	rng := rand.New(rand.NewPCG(4, 4))
	means := clusterMeans(rng, d, k, 0.6) // overlapping: accuracy well below 1
	trX, trY := clusters(rng, means, 600, d, k, 1, 0)
	teX, teY := clusters(rng, means, 600, d, k, 1, 0)
	cfg := DefaultProbeConfig()
	cfg.Batch = 32
	a1, err1 := LinearProbe(trX, trY, teX, teY, d, k, cfg)
	a2, err2 := LinearProbe(trX, trY, teX, teY, d, k, cfg)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if a1 != a2 {
		t.Errorf("same seed, different accuracy: %v and %v", a1, a2)
	}
	if a1 < 0.5 || a1 > 0.99 {
		t.Errorf("accuracy %v outside the expected range for overlapping clusters", a1)
	}
	// float64 features give the same classifier up to rounding.
	tr64, te64 := make([]float64, len(trX)), make([]float64, len(teX))
	for i, v := range trX {
		tr64[i] = float64(v)
	}
	for i, v := range teX {
		te64[i] = float64(v)
	}
	a64, err := LinearProbe(tr64, trY, te64, teY, d, k, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(a64-a1) > 0.02 {
		t.Errorf("float64 accuracy %v, float32 %v", a64, a1)
	}
}

// TestLinearProbeConstantFeature checks that a feature constant on the
// training split is ignored, even when it takes wild values at test time.
func TestLinearProbeConstantFeature(t *testing.T) {
	const d, k = 6, 3
	rng := rand.New(rand.NewPCG(5, 5))
	means := clusterMeans(rng, d, k, 2)
	for c := range k {
		means[c*d] = 0 // feature 0 carries no signal...
	}
	trX, trY := clusters(rng, means, 900, d, k, 1, 0)
	teX, teY := clusters(rng, means, 300, d, k, 1, 0)
	for i := range trY {
		trX[i*d] = 3 // ...and is constant on the training split
	}
	for i := range teY {
		teX[i*d] = float32(1e6 * rng.NormFloat64())
	}
	acc, err := LinearProbe(trX, trY, teX, teY, d, k, DefaultProbeConfig())
	if err != nil {
		t.Fatal(err)
	}
	if acc < 0.9 {
		t.Errorf("accuracy %v, want ≥ 0.9 (the constant feature must not matter)", acc)
	}
}

func TestLinearProbeErrors(t *testing.T) {
	x := make([]float32, 4*2)
	for i := range x {
		x[i] = float32(i % 3)
	}
	y := []int{0, 1, 0, 1}
	good := DefaultProbeConfig()
	bad := func(f func(*ProbeConfig)) ProbeConfig { c := good; f(&c); return c }
	nan := append([]float32(nil), x...)
	nan[3] = float32(math.NaN())
	cases := []struct {
		name       string
		trX, teX   []float32
		trY, teY   []int
		d, classes int
		cfg        ProbeConfig
		msg        string
	}{
		{"train shape", x[:7], x, y, y, 2, 2, good, "do not match"},
		{"test shape", x, x, y, y[:3], 2, 2, good, "do not match"},
		{"empty test", x, nil, y, nil, 2, 2, good, "non-empty"},
		{"label range", x, x, []int{0, 1, 2, 0}, y, 2, 2, good, "train label 2 of item 2"},
		{"negative test label", x, x, y, []int{0, -1, 0, 0}, 2, 2, good, "test label -1"},
		{"one class", x, x, []int{0, 0, 0, 0}, []int{0, 0, 0, 0}, 2, 1, good, "at least 2 classes"},
		{"epochs", x, x, y, y, 2, 2, bad(func(c *ProbeConfig) { c.Epochs = 0 }), "epochs"},
		{"batch", x, x, y, y, 2, 2, bad(func(c *ProbeConfig) { c.Batch = 0 }), "batch"},
		{"lr", x, x, y, y, 2, 2, bad(func(c *ProbeConfig) { c.LR = math.NaN() }), "learning rate"},
		{"l2", x, x, y, y, 2, 2, bad(func(c *ProbeConfig) { c.L2 = -1 }), "L2"},
		{"NaN feature", nan, x, y, y, 2, 2, good, "feature 1 is not finite"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LinearProbe(c.trX, c.trY, c.teX, c.teY, c.d, c.classes, c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %v, want one containing %q", err, c.msg)
			}
		})
	}
	if _, err := LinearProbe(x, y, x, y, 2, 2, good); err != nil {
		t.Errorf("valid input: %v", err)
	}
}

// TestLinearProbeBytesEqualsFloats: the byte path reads the same values as
// LinearProbe on their float32 copies, so the accuracy is identical.
func TestLinearProbeBytesEqualsFloats(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const n, nTest, d, k = 600, 200, 12, 3
	bytesOf := func(n int) ([]byte, []float32, []int) {
		b := make([]byte, n*d)
		f := make([]float32, n*d)
		y := make([]int, n)
		for i := range n {
			y[i] = rng.IntN(k)
			for j := range d {
				v := byte(min(255, max(0, 60*y[i]+20*j%50+rng.IntN(80))))
				b[i*d+j], f[i*d+j] = v, float32(v)
			}
		}
		return b, f, y
	}
	trB, trF, trY := bytesOf(n)
	teB, teF, teY := bytesOf(nTest)
	cfg := DefaultProbeConfig()
	got, err := LinearProbeBytes(trB, trY, teB, teY, d, k, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want, err := LinearProbe(trF, trY, teF, teY, d, k, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got != want || got < 0.5 {
		t.Fatalf("bytes %.4f, floats %.4f: want equal and well above chance", got, want)
	}
}

package optim

import (
	"math"
	"testing"
)

func TestWarmupCosineEndpoints(t *testing.T) {
	s := WarmupCosine{Base: 0.1, Min: 0.001, Warmup: 100, Total: 1100}
	cases := []struct {
		step int64
		want float64
	}{
		{-5, 0},
		{0, 0},
		{50, 0.05},
		{100, 0.1},
		{600, (0.1 + 0.001) / 2}, // half-way through the cosine
		{1100, 0.001},
		{5000, 0.001},
	}
	for _, c := range cases {
		if got := s.At(c.step); math.Abs(got-c.want) > 1e-15 {
			t.Errorf("At(%d) = %v, want %v", c.step, got, c.want)
		}
	}
	if got := (WarmupCosine{Base: 1, Total: 10}).At(0); got != 1 {
		t.Errorf("no warm-up: At(0) = %v, want Base", got)
	}
	if got := (WarmupCosine{Base: 1, Warmup: 4, Total: 4}).At(4); got != 0 {
		t.Errorf("no decay phase: At(Total) = %v, want Min", got)
	}
}

func TestWarmupCosineMonotone(t *testing.T) {
	for _, s := range []WarmupCosine{
		{Base: 3e-4, Min: 0, Warmup: 37, Total: 500},
		{Base: 1, Min: 0.5, Warmup: 0, Total: 10},
		{Base: 5e-4, Min: 1e-5, Warmup: 2000, Total: 20000},
	} {
		prev := s.At(0)
		for step := int64(1); step <= s.Total+10; step++ {
			cur := s.At(step)
			if step <= s.Warmup && !(cur > prev) {
				t.Fatalf("%+v: warm-up not increasing at %d: %v after %v", s, step, cur, prev)
			}
			if step > s.Warmup && cur > prev {
				t.Fatalf("%+v: decay increasing at %d: %v after %v", s, step, cur, prev)
			}
			if cur < s.Min && step >= s.Warmup || cur > s.Base {
				t.Fatalf("%+v: At(%d) = %v outside [Min, Base]", s, step, cur)
			}
			prev = cur
		}
	}
}

func TestClipGlobalNorm(t *testing.T) {
	cases := []struct {
		name     string
		g        []float64
		max      float64
		wantNorm float64
		want     []float64
	}{
		{"clipped", []float64{3, 4}, 1, 5, []float64{0.6, 0.8}},
		{"below max", []float64{3, 4}, 10, 5, []float64{3, 4}},
		{"exactly max", []float64{3, 4}, 5, 5, []float64{3, 4}},
		{"disabled", []float64{3, 4}, 0, 5, []float64{3, 4}},
		{"negative max", []float64{3, 4}, -1, 5, []float64{3, 4}},
		{"zero", []float64{0, 0}, 1, 0, []float64{0, 0}},
		{"empty", nil, 1, 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := append([]float64(nil), c.g...)
			if n := ClipGlobalNorm(g, c.max); n != c.wantNorm {
				t.Errorf("norm = %v, want %v", n, c.wantNorm)
			}
			for i := range g {
				if math.Abs(g[i]-c.want[i]) > 1e-12 {
					t.Errorf("g = %v, want %v", g, c.want)
					break
				}
			}
		})
	}
	g := []float64{1, math.NaN()}
	if n := ClipGlobalNorm(g, 1); !math.IsNaN(n) || g[0] != 1 {
		t.Errorf("NaN gradient: norm %v, g %v; want NaN and g unchanged", n, g)
	}
	g = []float64{1, math.Inf(1)}
	if n := ClipGlobalNorm(g, 1); !math.IsInf(n, 1) || g[0] != 1 {
		t.Errorf("Inf gradient: norm %v, g %v; want +Inf and g unchanged", n, g)
	}
}

// TestClipGlobalNormFloat32Bound checks that after clipping a float32
// gradient its norm never exceeds maxNorm, despite rounding.
func TestClipGlobalNormFloat32Bound(t *testing.T) {
	for seed := range 50 {
		g := make([]float32, 1000+seed)
		for i := range g {
			g[i] = float32(math.Sin(float64(i*(seed+3)))) * float32(seed+1)
		}
		before := norm2(g)
		maxNorm := before / float64(2+seed%7) // always clips
		if n := ClipGlobalNorm(g, maxNorm); n != before {
			t.Fatalf("returned %v, want norm before clipping %v", n, before)
		}
		after := norm2(g)
		if after > maxNorm || after < maxNorm*(1-1e-6) {
			t.Fatalf("seed %d: norm after clipping %.10g, want ≤ and ≈ %.10g", seed, after, maxNorm)
		}
	}
}

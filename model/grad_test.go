package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

// gradTol is the largest accepted relative error between an analytic
// gradient and its central finite difference in float64.
const gradTol = 1e-6

// fdStep is the step h of the central difference (L(θ+h) − L(θ−h))/(2h).
const fdStep = 1e-6

// relErr is max_i |a_i − n_i| / max(max_i |a_i|, max_i |n_i|).
func relErr(a, n []float64) float64 {
	var diff, scale float64
	for i := range a {
		diff = max(diff, math.Abs(a[i]-n[i]))
		scale = max(scale, math.Abs(a[i]), math.Abs(n[i]))
	}
	if scale == 0 {
		return diff
	}
	return diff / scale
}

// checkFD compares analytic with the central differences of loss with
// respect to every element of theta (restored afterwards).
func checkFD(t *testing.T, what string, theta, analytic []float64, loss func() float64) {
	t.Helper()
	if len(theta) != len(analytic) {
		t.Fatalf("%s: %d parameters but %d gradient entries", what, len(theta), len(analytic))
	}
	num := make([]float64, len(theta))
	for i := range theta {
		old := theta[i]
		theta[i] = old + fdStep
		lp := loss()
		theta[i] = old - fdStep
		lm := loss()
		theta[i] = old
		num[i] = (lp - lm) / (2 * fdStep)
	}
	var any bool
	for _, v := range analytic {
		any = any || v != 0
	}
	if !any {
		t.Errorf("%s: analytic gradient is identically zero", what)
	}
	e := relErr(analytic, num)
	t.Logf("%s: relative error %.2g", what, e)
	if e > gradTol {
		t.Errorf("%s: relative error %.3g > %g\nanalytic %v\nnumeric  %v", what, e, gradTol, analytic, num)
	}
}

func randVec(rng *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	return v
}

// awayFromZero moves every entry at least 0.05 away from 0, so that a step h
// never crosses the kink of ReLU.
func awayFromZero(v []float64) {
	for i, x := range v {
		if math.Abs(x) < 0.05 {
			v[i] = math.Copysign(0.05+math.Abs(x), x)
		}
	}
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// TestLayerGradients checks ∂L/∂x and every parameter gradient of each
// layer against central differences, with L = r·y for a random r.
func TestLayerGradients(t *testing.T) {
	const b, in, out = 3, 5, 4
	tests := []struct {
		name  string
		width int // input width
		outW  int // output width
		make  func(rng *rand.Rand) (Layer[float64], map[string][2][]float64)
	}{
		{"linear", in, out, func(rng *rand.Rand) (Layer[float64], map[string][2][]float64) {
			l := &Linear[float64]{In: in, Out: out, W: randVec(rng, in*out), B: randVec(rng, out),
				DW: make([]float64, in*out), DB: make([]float64, out)}
			return l, map[string][2][]float64{"W": {l.W, l.DW}, "b": {l.B, l.DB}}
		}},
		{"relu", in, in, func(*rand.Rand) (Layer[float64], map[string][2][]float64) { return &ReLU[float64]{N: in}, nil }},
		{"gelu", in, in, func(*rand.Rand) (Layer[float64], map[string][2][]float64) { return &GELU[float64]{N: in}, nil }},
		{"layernorm", in, in, func(rng *rand.Rand) (Layer[float64], map[string][2][]float64) {
			l := &LayerNorm[float64]{N: in, Gain: randVec(rng, in), Bias: randVec(rng, in),
				DGain: make([]float64, in), DBias: make([]float64, in)}
			return l, map[string][2][]float64{"gain": {l.Gain, l.DGain}, "bias": {l.Bias, l.DBias}}
		}},
		{"l2normalize", in, in, func(*rand.Rand) (Layer[float64], map[string][2][]float64) {
			return &L2Normalize[float64]{N: in}, nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 11))
			layer, params := tc.make(rng)
			x := randVec(rng, b*tc.width)
			awayFromZero(x)
			r := randVec(rng, b*tc.outW)
			loss := func() float64 {
				y, err := layer.Forward(x, b)
				if err != nil {
					t.Fatal(err)
				}
				return dot(r, y)
			}
			loss()
			dx, err := layer.Backward(r)
			if err != nil {
				t.Fatal(err)
			}
			dx = append([]float64(nil), dx...)
			grads := map[string][]float64{}
			for name, p := range params {
				grads[name] = append([]float64(nil), p[1]...)
			}
			checkFD(t, tc.name+" ∂L/∂x", x, dx, loss)
			for name, p := range params {
				checkFD(t, tc.name+" ∂L/∂"+name, p[0], grads[name], loss)
			}
		})
	}
}

func TestEmbeddingBagGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const vocab, dim = 6, 4
	e := &EmbeddingBag[float64]{Vocab: vocab, Dim: dim, E: randVec(rng, vocab*dim), DE: make([]float64, vocab*dim)}
	// Bags: {1, 2, 2}, {} (empty), {5}, {0, 1, 3, 1}.
	ids := []int32{1, 2, 2, 5, 0, 1, 3, 1}
	offsets := []int32{0, 3, 3, 4}
	const b = 4
	r := randVec(rng, b*dim)
	loss := func() float64 {
		y, err := e.Forward(ids, offsets, b)
		if err != nil {
			t.Fatal(err)
		}
		return dot(r, y)
	}
	loss()
	if err := e.Backward(r); err != nil {
		t.Fatal(err)
	}
	g := append([]float64(nil), e.DE...)
	for k := 0; k < dim; k++ {
		if g[4*dim+k] != 0 {
			t.Errorf("row 4 is in no bag but has gradient %v", g[4*dim+k])
		}
	}
	checkFD(t, "embeddingbag ∂L/∂E", e.E, g, loss)
}

// smallConfig is a tower pair small enough to perturb every parameter.
func smallConfig(act string, ln bool) Config {
	return Config{ImageIn: 6, ImageHidden: []int{5, 4}, TextVocab: 7, TextHidden: 5, Dim: 3,
		Activation: act, LayerNorm: ln, InitLogitScale: math.Log(1 / 0.07)}
}

// TestTowerGradients checks the gradient of every parameter of both towers
// end to end, with L = r·u + q·v for random projections r and q.
func TestTowerGradients(t *testing.T) {
	for _, act := range []string{ActReLU, ActGELU} {
		for _, ln := range []bool{false, true} {
			cfg := smallConfig(act, ln)
			name := act
			if ln {
				name += "+layernorm"
			}
			t.Run(name, func(t *testing.T) {
				m, err := New[float64](cfg, 5)
				if err != nil {
					t.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(9, 9))
				const b = 4
				x := randVec(rng, b*cfg.ImageIn)
				ids := []int32{0, 3, 3, 6, 1, 2, 5, 4, 4, 4}
				offsets := []int32{0, 2, 5, 6}
				r, q := randVec(rng, b*cfg.Dim), randVec(rng, b*cfg.Dim)
				loss := func() float64 {
					u, err := m.Image.Forward(Rows(x, b))
					if err != nil {
						t.Fatal(err)
					}
					lu := dot(r, u)
					v, err := m.Text.Forward(Bags[float64](ids, offsets, b))
					if err != nil {
						t.Fatal(err)
					}
					return lu + dot(q, v)
				}
				m.P.ZeroGrad()
				loss()
				if err := m.Image.Backward(r); err != nil {
					t.Fatal(err)
				}
				if err := m.Text.Backward(q); err != nil {
					t.Fatal(err)
				}
				g := append([]float64(nil), m.P.G...)
				if g[m.LogitScale] != 0 {
					t.Errorf("towers wrote %v into the logit scale's gradient", g[m.LogitScale])
				}
				for _, s := range m.P.Segments {
					if s.Name == LogitScaleName {
						continue
					}
					w, _ := m.P.View(s)
					checkFD(t, s.Name, w, g[s.Off:s.Off+s.Len], loss)
				}
			})
		}
	}
}

// TestGradientAccumulates checks that Backward adds into G: two backward
// passes of the same batch give twice the gradient of one.
func TestGradientAccumulates(t *testing.T) {
	m, err := New[float64](smallConfig(ActGELU, true), 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	x, r := randVec(rng, 2*6), randVec(rng, 2*3)
	if _, err := m.Image.Forward(Rows(x, 2)); err != nil {
		t.Fatal(err)
	}
	if err := m.Image.Backward(r); err != nil {
		t.Fatal(err)
	}
	once := append([]float64(nil), m.P.G...)
	if err := m.Image.Backward(r); err != nil {
		t.Fatal(err)
	}
	for i := range once {
		if math.Abs(m.P.G[i]-2*once[i]) > 1e-12*math.Abs(once[i]) {
			t.Fatalf("G[%d] = %v after two passes, want 2×%v", i, m.P.G[i], once[i])
		}
	}
	m.P.ZeroGrad()
	for i, v := range m.P.G {
		if v != 0 {
			t.Fatalf("G[%d] = %v after ZeroGrad", i, v)
		}
	}
}

package model

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/infonce/infonce/gemm"
)

func TestLinearForwardMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	const b, in, out = 3, 4, 5
	l := &Linear[float64]{In: in, Out: out, W: randVec(rng, in*out), B: randVec(rng, out)}
	x := randVec(rng, b*in)
	y, err := l.Forward(x, b)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < b; i++ {
		for o := 0; o < out; o++ {
			want := l.B[o]
			for k := 0; k < in; k++ {
				want += x[i*in+k] * l.W[o*in+k]
			}
			if math.Abs(y[i*out+o]-want) > 1e-12 {
				t.Errorf("y[%d,%d] = %v, want %v", i, o, y[i*out+o], want)
			}
		}
	}
}

func TestActivationValues(t *testing.T) {
	x := []float64{-2, -0.5, 0, 1, 3}
	// GELU(x) = x Φ(x); Φ(1) = 0.8413447460685429, Φ(−0.5) = 0.3085375387259869.
	wantGELU := []float64{-2 * 0.022750131948179195, -0.5 * 0.3085375387259869, 0, 0.8413447460685429, 3 * 0.9986501019683699}
	wantReLU := []float64{0, 0, 0, 1, 3}
	g := &GELU[float64]{N: len(x)}
	r := &ReLU[float64]{N: len(x)}
	yg, err := g.Forward(x, 1)
	if err != nil {
		t.Fatal(err)
	}
	yr, err := r.Forward(x, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range x {
		if math.Abs(yg[i]-wantGELU[i]) > 1e-12 {
			t.Errorf("GELU(%v) = %v, want %v", x[i], yg[i], wantGELU[i])
		}
		if yr[i] != wantReLU[i] {
			t.Errorf("ReLU(%v) = %v, want %v", x[i], yr[i], wantReLU[i])
		}
	}
}

func TestLayerNormAndL2Values(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	const b, n = 4, 7
	x := randVec(rng, b*n)
	for i := range x {
		x[i] = 3*x[i] + 5
	}
	ones, zeros := make([]float64, n), make([]float64, n)
	for i := range ones {
		ones[i] = 1
	}
	ln := &LayerNorm[float64]{N: n, Gain: ones, Bias: zeros}
	y, err := ln.Forward(x, b)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < b; i++ {
		var mu, v float64
		for _, e := range y[i*n : (i+1)*n] {
			mu += e
		}
		mu /= n
		for _, e := range y[i*n : (i+1)*n] {
			v += (e - mu) * (e - mu)
		}
		v /= n
		if math.Abs(mu) > 1e-12 || math.Abs(v-1) > 1e-4 {
			t.Errorf("row %d after LayerNorm: mean %v, variance %v, want 0 and ≈1", i, mu, v)
		}
	}
	l2 := &L2Normalize[float64]{N: n}
	u, err := l2.Forward(x, b)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < b; i++ {
		var s float64
		for k, e := range u[i*n : (i+1)*n] {
			s += e * e
			if e*x[i*n] < 0 && k == 0 {
				t.Errorf("row %d: direction flipped", i)
			}
		}
		if math.Abs(s-1) > 1e-12 {
			t.Errorf("row %d: ‖y‖² = %v, want 1", i, s)
		}
	}
	zero := make([]float64, n)
	if z, err := l2.Forward(zero, 1); err != nil || z[0] != 0 || math.IsNaN(z[0]) {
		t.Errorf("L2Normalize(0) = %v, %v; want 0 without NaN", z, err)
	}
}

func TestEmbeddingBagMean(t *testing.T) {
	const vocab, dim = 5, 2
	e := &EmbeddingBag[float32]{Vocab: vocab, Dim: dim, E: []float32{0, 1, 10, 11, 20, 21, 30, 31, 40, 41}}
	y, err := e.Forward([]int32{1, 3, 4, 4, 0}, []int32{0, 2, 2, 4}, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{20, 21, 0, 0, 40, 41, 0, 1} // mean{1,3}, empty, mean{4,4}, {0}
	for i := range want {
		if y[i] != want[i] {
			t.Fatalf("EmbeddingBag = %v, want %v", y, want)
		}
	}
}

func TestLayoutAndNumParams(t *testing.T) {
	cfg := DefaultConfig()
	want := 784*512 + 512 + 512*256 + 256 + 256*64 + 64 + 1
	if n := cfg.NumParams(); n != want {
		t.Errorf("default NumParams = %d, want %d", n, want)
	}
	cfg.TextVocab, cfg.LayerNorm = 1000, true
	want += 1000*256 + 256*64 + 64 + 2*(512+256+256)
	if n := cfg.NumParams(); n != want {
		t.Errorf("NumParams with text and LayerNorm = %d, want %d", n, want)
	}
	m, err := New[float32](cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.P.W) != want || len(m.P.G) != want {
		t.Fatalf("len(W), len(G) = %d, %d, want %d", len(m.P.W), len(m.P.G), want)
	}
	off := 0
	for _, s := range m.P.Segments {
		if s.Off != off || s.Len <= 0 {
			t.Fatalf("segment %q at %d+%d, want contiguous from %d", s.Name, s.Off, s.Len, off)
		}
		off += s.Len
		wantNoDecay := strings.HasSuffix(s.Name, ".bias") || strings.HasSuffix(s.Name, ".gain") || s.Name == LogitScaleName
		if s.NoDecay != wantNoDecay {
			t.Errorf("segment %q: NoDecay = %v, want %v", s.Name, s.NoDecay, wantNoDecay)
		}
	}
	if off != want {
		t.Errorf("segments cover %d of %d parameters", off, want)
	}
	if s, ok := m.P.Lookup(LogitScaleName); !ok || s.Off != m.LogitScale || s.Len != 1 {
		t.Errorf("logit scale segment %+v, LogitScale %d", s, m.LogitScale)
	}
	if got, want := float64(m.P.W[m.LogitScale]), math.Log(1/0.07); math.Abs(got-want) > 1e-6 {
		t.Errorf("t = %v, want ln(1/0.07) = %v", got, want)
	}
	if got := float64(m.Scale()); math.Abs(got-1/0.07) > 1e-4 {
		t.Errorf("Scale() = %v, want 1/0.07", got)
	}
}

func TestInitialisation(t *testing.T) {
	cfg := DefaultConfig()
	cfg.TextVocab, cfg.LayerNorm = 300, true
	m, err := New[float64](cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range m.P.Segments {
		w, _ := m.P.View(s)
		var mean, sq, maxAbs float64
		for _, v := range w {
			mean += v
			sq += v * v
			maxAbs = max(maxAbs, math.Abs(v))
		}
		mean /= float64(len(w))
		sq /= float64(len(w))
		switch {
		case strings.HasPrefix(s.Name, "image.ln") || s.Name == "text.ln.gain" || s.Name == "text.ln.bias":
			want := 0.0
			if strings.HasSuffix(s.Name, ".gain") {
				want = 1
			}
			for _, v := range w {
				if v != want {
					t.Fatalf("%s has %v, want all %v", s.Name, v, want)
				}
			}
		case s.Name == "text.embed.weight":
			if math.Abs(mean) > 0.02 || math.Abs(sq-1) > 0.02 {
				t.Errorf("%s: mean %v, second moment %v, want N(0,1)", s.Name, mean, sq)
			}
		case s.Name == LogitScaleName:
		default: // Linear: U(−1/√fan_in, 1/√fan_in), variance 1/(3 fan_in)
			fanIn := cfg.ImageIn
			switch {
			case strings.HasPrefix(s.Name, "image.fc1"):
				fanIn = 512
			case s.Name == "image.proj.weight" || s.Name == "image.proj.bias":
				fanIn = 256
			case strings.HasPrefix(s.Name, "text.proj"):
				fanIn = cfg.TextHidden
			}
			bound := 1 / math.Sqrt(float64(fanIn))
			if maxAbs > bound || maxAbs < 0.8*bound {
				t.Errorf("%s: max |w| = %v, want just below %v", s.Name, maxAbs, bound)
			}
			if s.Len > 1000 && math.Abs(sq*3*float64(fanIn)-1) > 0.1 {
				t.Errorf("%s: second moment × 3 fan_in = %v, want ≈1", s.Name, sq*3*float64(fanIn))
			}
		}
	}
}

func wBytes(w []float32) []byte {
	var buf bytes.Buffer
	_ = binary.Write(&buf, binary.LittleEndian, w)
	return buf.Bytes()
}

func TestDeterminism(t *testing.T) {
	cfg := smallConfig(ActReLU, true)
	cfg.ImageIn, cfg.TextVocab = 50, 40
	a, err := New[float32](cfg, 42)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New[float32](cfg, 42)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New[float32](cfg, 43)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(wBytes(a.P.W), wBytes(b.P.W)) {
		t.Error("same seed gave different parameters")
	}
	if bytes.Equal(wBytes(a.P.W), wBytes(c.P.W)) {
		t.Error("different seeds gave the same parameters")
	}
	// float64 uses the same draws: float32(W64) == W32.
	d, err := New[float64](cfg, 42)
	if err != nil {
		t.Fatal(err)
	}
	for i := range d.P.W {
		if float32(d.P.W[i]) != a.P.W[i] {
			t.Fatalf("W64[%d] = %v, W32 = %v", i, d.P.W[i], a.P.W[i])
		}
	}
}

func TestNewWithParams(t *testing.T) {
	cfg := smallConfig(ActGELU, true)
	m, err := New[float64](cfg, 8)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewWithParams(cfg, m.P.W)
	if err != nil {
		t.Fatal(err)
	}
	if &k.P.W[0] != &m.P.W[0] || len(k.P.W) != len(m.P.W) {
		t.Error("NewWithParams copied W instead of sharing it")
	}
	if k.P.G != nil {
		t.Error("NewWithParams has a gradient buffer")
	}
	if len(k.P.Segments) != len(m.P.Segments) || k.LogitScale != m.LogitScale {
		t.Fatal("different layout")
	}
	for i := range k.P.Segments {
		if k.P.Segments[i] != m.P.Segments[i] {
			t.Errorf("segment %d: %+v vs %+v", i, k.P.Segments[i], m.P.Segments[i])
		}
	}
	rng := rand.New(rand.NewPCG(5, 5))
	x := randVec(rng, 3*cfg.ImageIn)
	um, err := m.Image.Forward(Rows(x, 3))
	if err != nil {
		t.Fatal(err)
	}
	uk, err := k.Image.Forward(Rows(x, 3))
	if err != nil {
		t.Fatal(err)
	}
	if &um[0] == &uk[0] {
		t.Error("the copy shares the activation cache")
	}
	for i := range um {
		if um[i] != uk[i] {
			t.Fatalf("embeddings differ at %d: %v vs %v", i, um[i], uk[i])
		}
	}
	// A change of the shared W shows in the copy.
	m.P.W[0] += 1
	uk2, _ := k.Image.Forward(Rows(x, 3))
	if uk2[0] == um[0] && uk2[1] == um[1] && uk2[2] == um[2] {
		t.Error("the copy does not see updates of the shared W")
	}
	if err := k.Image.Backward(make([]float64, 3*cfg.Dim)); err == nil || !strings.Contains(err.Error(), "no gradient buffer") {
		t.Errorf("image Backward without G: err = %v, want a no-gradient-buffer error", err)
	}
	if _, err := k.Text.Forward(Bags[float64]([]int32{1, 2}, []int32{0}, 1)); err != nil {
		t.Fatal(err)
	}
	if err := k.Text.Backward(make([]float64, cfg.Dim)); err == nil || !strings.Contains(err.Error(), "no gradient buffer") {
		t.Errorf("text Backward without G: err = %v, want a no-gradient-buffer error", err)
	}
	if _, err := NewWithParams(cfg, m.P.W[1:]); err == nil {
		t.Error("NewWithParams accepted a buffer of the wrong length")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		field string // "" = valid
	}{
		{"default", func(*Config) {}, ""},
		{"with text", func(c *Config) { c.TextVocab = 10 }, ""},
		{"empty activation means relu", func(c *Config) { c.Activation = "" }, ""},
		{"image in", func(c *Config) { c.ImageIn = 0 }, "ImageIn"},
		{"no hidden", func(c *Config) { c.ImageHidden = nil }, "ImageHidden"},
		{"negative hidden", func(c *Config) { c.ImageHidden = []int{4, -1} }, "ImageHidden[1]"},
		{"vocab", func(c *Config) { c.TextVocab = -1 }, "TextVocab"},
		{"text hidden", func(c *Config) { c.TextVocab, c.TextHidden = 5, 0 }, "TextHidden"},
		{"dim", func(c *Config) { c.Dim = 0 }, "Dim"},
		{"activation", func(c *Config) { c.Activation = "tanh" }, "Activation"},
		{"logit scale", func(c *Config) { c.InitLogitScale = math.NaN() }, "InitLogitScale"},
		{"too large", func(c *Config) { c.ImageIn, c.ImageHidden = 1<<30, []int{1 << 30} }, "parameters"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("valid config rejected: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("err = %v, want an error naming %s", err, tc.field)
			}
			if c.NumParams() != 0 {
				t.Errorf("NumParams of an invalid config = %d, want 0", c.NumParams())
			}
			if _, err := New[float32](c, 1); err == nil {
				t.Error("New accepted an invalid config")
			}
			if _, err := NewWithParams[float32](c, nil); err == nil {
				t.Error("NewWithParams accepted an invalid config")
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	cfg := smallConfig(ActReLU, false)
	m, err := New[float32](cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Image.Backward(make([]float32, cfg.Dim)); err == nil {
		t.Error("image Backward before Forward accepted")
	}
	if err := m.Text.Backward(make([]float32, cfg.Dim)); err == nil {
		t.Error("text Backward before Forward accepted")
	}
	imageCases := []struct {
		name string
		x    []float32
		b    int
	}{
		{"short", make([]float32, 2*cfg.ImageIn-1), 2},
		{"long", make([]float32, 2*cfg.ImageIn+1), 2},
		{"negative batch", nil, -1},
	}
	for _, tc := range imageCases {
		if _, err := m.Image.Forward(Rows(tc.x, tc.b)); err == nil {
			t.Errorf("image Forward %s: no error", tc.name)
		}
	}
	if _, err := m.Image.Forward(Rows(make([]float32, 2*cfg.ImageIn), 2)); err != nil {
		t.Fatal(err)
	}
	if err := m.Image.Backward(make([]float32, 3*cfg.Dim)); err == nil {
		t.Error("image Backward with a gradient of the wrong shape accepted")
	}
	textCases := []struct {
		name         string
		ids, offsets []int32
		b            int
		want         string
	}{
		{"id too large", []int32{0, 7}, []int32{0}, 1, "out of range"},
		{"negative id", []int32{-1}, []int32{0}, 1, "out of range"},
		{"offsets count", []int32{0, 1}, []int32{0}, 2, "offsets"},
		{"first offset", []int32{0, 1}, []int32{1, 1}, 2, "offsets[0]"},
		{"decreasing", []int32{0, 1, 2}, []int32{0, 2, 1}, 3, "offsets[2]"},
		{"past end", []int32{0, 1}, []int32{0, 3}, 2, "offsets[1]"},
		{"ids without bags", []int32{1}, nil, 0, "no bags"},
	}
	for _, tc := range textCases {
		if _, err := m.Text.Forward(Bags[float32](tc.ids, tc.offsets, tc.b)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("text Forward %s: err = %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
	// A failed Forward leaves nothing for Backward.
	if _, err := m.Image.Forward(Rows(make([]float32, 1), 2)); err == nil {
		t.Fatal("bad Forward accepted")
	}
	if err := m.Image.Backward(make([]float32, 2*cfg.Dim)); err == nil {
		t.Error("image Backward after a failed Forward accepted")
	}
	// An empty batch is allowed (a rank may own no rows).
	if u, err := m.Image.Forward(Rows[float32](nil, 0)); err != nil || len(u) != 0 {
		t.Errorf("empty image batch: %v, %v", u, err)
	}
	if err := m.Image.Backward(nil); err != nil {
		t.Errorf("empty image backward: %v", err)
	}
}

// TestZeroAllocs checks that a training step (ZeroGrad, Forward and Backward
// of both towers) allocates nothing once the caches exist, also after a
// larger batch grew them and a smaller one came back. It runs with gonum's
// kernel, which allocates nothing at these sizes, so that it measures the
// model alone, and with the default float32 kernel of gemm.
func TestZeroAllocs(t *testing.T) {
	kernels := []struct {
		name string
		k    gemm.Kernel32
	}{{"gonum", gemm.Gonum{}}, {"default", nil}}
	for _, kern := range kernels {
		for _, act := range []string{ActReLU, ActGELU} {
			t.Run(kern.name+"/"+act, func(t *testing.T) {
				if kern.k == nil && raceEnabled {
					t.Skip("the default gemm kernel keeps its workspaces in a sync.Pool, which the race detector empties at random")
				}
				if kern.k != nil {
					prev := gemm.Use(kern.k)
					t.Cleanup(func() { gemm.Use(prev) })
				}
				testZeroAllocs(t, act)
			})
		}
	}
}

func testZeroAllocs(t *testing.T, act string) {
	cfg := Config{ImageIn: 32, ImageHidden: []int{16, 8}, TextVocab: 50, TextHidden: 16, Dim: 8,
		Activation: act, LayerNorm: true}
	m, err := New[float32](cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const maxB = 12
	x := make([]float32, maxB*cfg.ImageIn)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	ids := make([]int32, 3*maxB)
	for i := range ids {
		ids[i] = int32(rng.IntN(cfg.TextVocab))
	}
	offsets := make([]int32, maxB)
	for i := range offsets {
		offsets[i] = int32(3 * i)
	}
	dEmb := make([]float32, maxB*cfg.Dim)
	for i := range dEmb {
		dEmb[i] = float32(rng.NormFloat64())
	}
	var stepErr error
	step := func(b int) {
		m.P.ZeroGrad()
		if _, err := m.Image.Forward(Rows(x[:b*cfg.ImageIn], b)); err != nil {
			stepErr = err
		}
		_ = m.Image.Features()
		if err := m.Image.Backward(dEmb[:b*cfg.Dim]); err != nil {
			stepErr = err
		}
		if _, err := m.Text.Forward(Bags[float32](ids[:3*b], offsets[:b], b)); err != nil {
			stepErr = err
		}
		if err := m.Text.Backward(dEmb[:b*cfg.Dim]); err != nil {
			stepErr = err
		}
	}
	step(maxB)
	if n := testing.AllocsPerRun(20, func() { step(maxB) }); n != 0 {
		t.Errorf("%v allocations per step at b=%d, want 0", n, maxB)
	}
	if n := testing.AllocsPerRun(20, func() { step(5) }); n != 0 {
		t.Errorf("%v allocations per step at a smaller batch, want 0", n)
	}
	if stepErr != nil {
		t.Fatal(stepErr)
	}
}

// TestFloat32MatchesFloat64 checks that the float32 path computes the same
// embeddings as the float64 path up to single-precision rounding.
func TestFloat32MatchesFloat64(t *testing.T) {
	cfg := DefaultConfig()
	cfg.TextVocab, cfg.Activation, cfg.LayerNorm = 100, ActGELU, true
	m32, err := New[float32](cfg, 9)
	if err != nil {
		t.Fatal(err)
	}
	m64, err := New[float64](cfg, 9)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	const b = 4
	x64 := randVec(rng, b*cfg.ImageIn)
	x32 := make([]float32, len(x64))
	for i, v := range x64 {
		x32[i] = float32(v)
	}
	u32, err := m32.Image.Forward(Rows(x32, b))
	if err != nil {
		t.Fatal(err)
	}
	u64, err := m64.Image.Forward(Rows(x64, b))
	if err != nil {
		t.Fatal(err)
	}
	for i := range u64 {
		if math.Abs(float64(u32[i])-u64[i]) > 1e-5 {
			t.Fatalf("u32[%d] = %v, u64 = %v", i, u32[i], u64[i])
		}
	}
}

// TestGradReadyOrder checks SetGradReady: a backward pass of the text
// tower, then the image tower, hands over adjacent slices of P.G from the
// logit scale's down to 0, each once and after its gradient is final.
func TestGradReadyOrder(t *testing.T) {
	for _, ln := range []bool{false, true} {
		cfg := Config{ImageIn: 12, ImageHidden: []int{10, 6}, TextVocab: 7, TextHidden: 5, Dim: 4,
			Activation: ActGELU, LayerNorm: ln}
		m, err := New[float64](cfg, 3)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(4, 5))
		const b = 3
		x := make([]float64, b*cfg.ImageIn)
		for i := range x {
			x[i] = rng.NormFloat64()
		}
		ids, offsets := []int32{1, 2, 3, 4, 5, 6}, []int32{0, 2, 4}
		dEmb := make([]float64, b*cfg.Dim)
		for i := range dEmb {
			dEmb[i] = rng.NormFloat64()
		}
		run := func() {
			m.P.ZeroGrad()
			if _, err := m.Image.Forward(Rows(x, b)); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Text.Forward(Bags[float64](ids, offsets, b)); err != nil {
				t.Fatal(err)
			}
			if err := m.Text.Backward(dEmb); err != nil {
				t.Fatal(err)
			}
			if err := m.Image.Backward(dEmb); err != nil {
				t.Fatal(err)
			}
		}
		run()
		want := slices.Clone(m.P.G)

		top := m.LogitScale // the next slice must end here
		m.SetGradReady(func(g []float64) {
			off := int(uintptr(unsafe.Pointer(&g[0]))-uintptr(unsafe.Pointer(&m.P.G[0]))) / 8
			if off+len(g) != top {
				t.Errorf("LayerNorm %v: slice [%d, %d) handed over, want one ending at %d", ln, off, off+len(g), top)
			}
			if !slices.Equal(g, want[off:off+len(g)]) {
				t.Errorf("LayerNorm %v: slice [%d, %d) handed over before its gradient was final", ln, off, off+len(g))
			}
			top = off
		})
		run()
		if top != 0 {
			t.Errorf("LayerNorm %v: the slices handed over stop at %d, want 0", ln, top)
		}
		m.SetGradReady(nil)
		top = -1
		run() // no more calls
	}
}

// TestNewWithGrad: the model takes its gradient buffer from the caller,
// whole and at its address (the room after P.G included), cleared, with
// the same parameters as New; a buffer of another length is refused.
func TestNewWithGrad(t *testing.T) {
	cfg := DefaultConfig()
	n, err := NumGrad(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := cfg.NumParams() + GradTail; n != want {
		t.Fatalf("NumGrad = %d, want %d", n, want)
	}
	tests := []struct {
		name string
		len  int
		ok   bool
	}{{"exact", n, true}, {"short", n - 1, false}, {"long", n + 1, false}, {"no tail", n - GradTail, false}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := make([]float32, tc.len)
			for i := range g {
				g[i] = 7
			}
			m, err := NewWithGrad[float32](cfg, 1, g)
			if !tc.ok {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if &m.P.G[0] != &g[0] || len(m.P.G) != n-GradTail || cap(m.P.G) != n {
				t.Fatalf("P.G is not g[:%d:%d]", n-GradTail, n)
			}
			if slices.ContainsFunc(g, func(x float32) bool { return x != 0 }) {
				t.Fatal("the buffer was not cleared")
			}
			ref, _ := New[float32](cfg, 1)
			if !slices.Equal(m.P.W, ref.P.W) {
				t.Fatal("parameters differ from New's")
			}
		})
	}
	if _, err := NumGrad(Config{}); err == nil {
		t.Error("NumGrad accepted an invalid Config")
	}
}

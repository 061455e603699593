package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/infonce/infonce/gemm"
)

// paramRef is one parameter tensor of a layer under test and its gradient.
type paramRef[T gemm.Float] struct {
	name string
	w, g []T
}

// builder hands out random parameters whose values are float32 numbers, so
// that a float32 and a float64 layer built from the same seed hold the
// same values.
type builder[T gemm.Float] struct {
	rng    *rand.Rand
	params []paramRef[T]
}

func randT[T gemm.Float](rng *rand.Rand, n int) []T {
	v := make([]T, n)
	for i := range v {
		v[i] = T(float32(rng.NormFloat64()))
	}
	return v
}

func (b *builder[T]) param(name string, n int) (w, g []T) {
	w, g = randT[T](b.rng, n), make([]T, n)
	b.params = append(b.params, paramRef[T]{name, w, g})
	return w, g
}

func (b *builder[T]) linear(name string, in, out int) Linear[T] {
	w, dw := b.param(name+".weight", out*in)
	scaleRow(w, T(1/math.Sqrt(float64(in))))
	bias, db := b.param(name+".bias", out)
	return Linear[T]{In: in, Out: out, W: w, B: bias, DW: dw, DB: db}
}

func (b *builder[T]) attention(d, h, l int, causal bool, block int) *MultiHeadAttention[T] {
	return &MultiHeadAttention[T]{D: d, Heads: h, L: l, Causal: causal, Block: block,
		InProj: b.linear("in_proj", d, 3*d), OutProj: b.linear("out_proj", d, d)}
}

func (b *builder[T]) conv(cin, cout, h, w, kh, kw, stride, pad int) *Conv2d[T] {
	wt, dw := b.param("weight", cout*cin*kh*kw)
	bias, db := b.param("bias", cout)
	return &Conv2d[T]{Cin: cin, Cout: cout, H: h, W: w, KH: kh, KW: kw, Stride: stride, Pad: pad,
		Weight: wt, Bias: bias, DWeight: dw, DBias: db}
}

func (b *builder[T]) groupNorm(c, g, s int) *GroupNorm[T] {
	gain, dg := b.param("gain", c)
	bias, db := b.param("bias", c)
	return &GroupNorm[T]{C: c, G: g, S: s, Gain: gain, Bias: bias, DGain: dg, DBias: db}
}

func (b *builder[T]) layerNorm(n int) *LayerNorm[T] {
	gain, dg := b.param("ln.gain", n)
	bias, db := b.param("ln.bias", n)
	return &LayerNorm[T]{N: n, Gain: gain, Bias: bias, DGain: dg, DBias: db}
}

// seqCase is one layer under test: its input and output widths per batch
// row, and how to build it.
type seqCase struct {
	name    string
	in, out int
}

// seqCases lists the layers of attention.go, conv.go, groupnorm.go and
// tokens.go that fit the Layer interface, in shapes that exercise their edge
// cases: several and partial attention blocks, padding, strides, 1×1.
var seqCases = []seqCase{
	{"attention", 5 * 6, 5 * 6},
	{"attention-blocks", 5 * 6, 5 * 6},
	{"attention-causal", 5 * 6, 5 * 6},
	{"attention-causal-blocks", 7 * 4, 7 * 4},
	{"conv3x3-s1-p1", 2 * 5 * 4, 3 * 5 * 4},
	{"conv3x3-s2-p1", 2 * 5 * 4, 3 * 3 * 2},
	{"conv1x1", 3 * 3 * 3, 2 * 3 * 3},
	{"conv3x3-nobias", 2 * 5 * 4, 3 * 5 * 4},
	{"conv2x3-s2-p0", 2 * 5 * 6, 3 * 2 * 2},
	{"conv5x5-same-wider-than-image", 2 * 2 * 3, 2 * 2 * 3},
	{"groupnorm", 4 * 3, 4 * 3},
	{"groupnorm-instance", 4 * 3, 4 * 3},
	{"patchembed", 2 * 4 * 6, 6 * 3},
	{"position", 4 * 3, 4 * 3},
	{"classtoken", 4 * 3, 5 * 3},
	{"meanpool", 4 * 3, 3},
	{"globalavgpool", 3 * 4, 3},
	{"preln-attention-block", 4 * 6, 4 * 6},
	{"preln-mlp-block", 4 * 6, 4 * 6},
}

// buildSeq builds the layer of a seqCase from the builder's random stream.
func buildSeq[T gemm.Float](name string, bl *builder[T]) Layer[T] {
	switch name {
	case "attention":
		return bl.attention(6, 2, 5, false, 0)
	case "attention-blocks":
		return bl.attention(6, 3, 5, false, 2)
	case "attention-causal":
		return bl.attention(6, 2, 5, true, 0)
	case "attention-causal-blocks":
		return bl.attention(4, 2, 7, true, 3)
	case "conv3x3-s1-p1":
		return bl.conv(2, 3, 5, 4, 3, 3, 1, 1)
	case "conv3x3-s2-p1":
		return bl.conv(2, 3, 5, 4, 3, 3, 2, 1)
	case "conv3x3-nobias":
		c := bl.conv(2, 3, 5, 4, 3, 3, 1, 1)
		bl.params = bl.params[:len(bl.params)-1]
		c.Bias, c.DBias = nil, nil
		return c
	case "conv1x1":
		return bl.conv(3, 2, 3, 3, 1, 1, 1, 0)
	case "conv2x3-s2-p0":
		return bl.conv(2, 3, 5, 6, 2, 3, 2, 0)
	case "conv5x5-same-wider-than-image":
		return bl.conv(2, 2, 2, 3, 5, 5, 1, 2)
	case "groupnorm":
		return bl.groupNorm(4, 2, 3)
	case "groupnorm-instance":
		return bl.groupNorm(4, 4, 3)
	case "patchembed":
		return &PatchEmbed[T]{C: 2, H: 4, W: 6, P: 2, Proj: bl.linear("proj", 2*2*2, 3)}
	case "position":
		e, de := bl.param("pos", 4*3)
		return &PositionEmbedding[T]{L: 4, D: 3, E: e, DE: de}
	case "classtoken":
		c, dc := bl.param("cls", 3)
		return &ClassToken[T]{L: 4, D: 3, C: c, DC: dc}
	case "meanpool":
		return &MeanPool[T]{L: 4, D: 3}
	case "globalavgpool":
		return &GlobalAvgPool[T]{C: 3, S: 4}
	case "preln-attention-block":
		// x + MHA(LN(x)), a pre-LN transformer's first half.
		return &Residual[T]{F: Sequential[T]{PerToken[T]{L: 4, F: bl.layerNorm(6)}, bl.attention(6, 2, 4, true, 2)}}
	case "preln-mlp-block":
		// x + W₂ GELU(W₁ LN(x) + b₁) + b₂, its second half.
		fc1, fc2 := bl.linear("fc1", 6, 12), bl.linear("fc2", 12, 6)
		return &Residual[T]{F: PerToken[T]{L: 4, F: Sequential[T]{bl.layerNorm(6), &fc1, &GELU[T]{N: 12}, &fc2}}}
	}
	panic("unknown case " + name)
}

// TestSeqLayerGradients checks ∂L/∂x and every parameter gradient of each
// new layer against central differences in float64, with L = r·y.
func TestSeqLayerGradients(t *testing.T) {
	const b = 2
	for _, tc := range seqCases {
		t.Run(tc.name, func(t *testing.T) {
			bl := &builder[float64]{rng: rand.New(rand.NewPCG(17, 19))}
			layer := buildSeq(tc.name, bl)
			x := randVec(bl.rng, b*tc.in)
			r := randVec(bl.rng, b*tc.out)
			loss := func() float64 {
				y, err := layer.Forward(x, b)
				if err != nil {
					t.Fatal(err)
				}
				if len(y) != len(r) {
					t.Fatalf("output has %d elements, want %d", len(y), len(r))
				}
				return dot(r, y)
			}
			loss()
			dx, err := layer.Backward(r)
			if err != nil {
				t.Fatal(err)
			}
			dx = append([]float64(nil), dx...)
			checkFD(t, tc.name+" ∂L/∂x", x, dx, loss)
			for _, p := range bl.params {
				g := append([]float64(nil), p.g...)
				checkFD(t, tc.name+" ∂L/∂"+p.name, p.w, g, loss)
			}
		})
	}
}

// TestSeqLayersFloat32 runs every case in float32 and float64 on the same
// values: outputs, ∂L/∂x and parameter gradients agree to float32 rounding
// (relative to the largest entry).
func TestSeqLayersFloat32(t *testing.T) {
	const b, tol = 3, 2e-5
	for _, tc := range seqCases {
		t.Run(tc.name, func(t *testing.T) {
			b64 := &builder[float64]{rng: rand.New(rand.NewPCG(23, 29))}
			b32 := &builder[float32]{rng: rand.New(rand.NewPCG(23, 29))}
			l64, l32 := buildSeq(tc.name, b64), buildSeq(tc.name, b32)
			x32 := randT[float32](b32.rng, b*tc.in)
			r32 := randT[float32](b32.rng, b*tc.out)
			x64, r64 := widen(x32), widen(r32)
			for range 2 { // the second pass reuses the caches
				y64, err := l64.Forward(x64, b)
				if err != nil {
					t.Fatal(err)
				}
				y32, err := l32.Forward(x32, b)
				if err != nil {
					t.Fatal(err)
				}
				if e := relErr(widen(y32), y64); e > tol {
					t.Errorf("y: float32 against float64: relative error %.3g", e)
				}
				dx64, err := l64.Backward(r64)
				if err != nil {
					t.Fatal(err)
				}
				dx32, err := l32.Backward(r32)
				if err != nil {
					t.Fatal(err)
				}
				if e := relErr(widen(dx32), dx64); e > tol {
					t.Errorf("∂L/∂x: float32 against float64: relative error %.3g", e)
				}
			}
			for i, p := range b64.params {
				if e := relErr(widen(b32.params[i].g), p.g); e > tol {
					t.Errorf("∂L/∂%s: float32 against float64: relative error %.3g", p.name, e)
				}
			}
		})
	}
}

// naiveAttention is the textbook formula with the whole score matrix of a
// head in memory: S = Q_h K_hᵀ/√d_h (+ −∞ above the diagonal when causal),
// O_h = softmax(S) V_h, y = O W_outᵀ + b_out.
func naiveAttention(a *MultiHeadAttention[float64], x []float64, b int) []float64 {
	D, L, H := a.D, a.L, a.Heads
	dh := D / H
	qkv := make([]float64, b*L*3*D)
	for r := 0; r < b*L; r++ {
		for o := 0; o < 3*D; o++ {
			s := a.InProj.B[o]
			for i := 0; i < D; i++ {
				s += a.InProj.W[o*D+i] * x[r*D+i]
			}
			qkv[r*3*D+o] = s
		}
	}
	o := make([]float64, b*L*D)
	for n := 0; n < b; n++ {
		for h := 0; h < H; h++ {
			at := func(i, part, j int) float64 { return qkv[(n*L+i)*3*D+part*D+h*dh+j] }
			for i := 0; i < L; i++ {
				s := make([]float64, L)
				mx := math.Inf(-1)
				for j := 0; j < L; j++ {
					if a.Causal && j > i {
						s[j] = math.Inf(-1)
						continue
					}
					for k := 0; k < dh; k++ {
						s[j] += at(i, 0, k) * at(j, 1, k)
					}
					s[j] /= math.Sqrt(float64(dh))
					mx = max(mx, s[j])
				}
				var z float64
				for j := range s {
					s[j] = math.Exp(s[j] - mx)
					z += s[j]
				}
				for k := 0; k < dh; k++ {
					var v float64
					for j := range s {
						v += s[j] / z * at(j, 2, k)
					}
					o[(n*L+i)*D+h*dh+k] = v
				}
			}
		}
	}
	y := make([]float64, b*L*D)
	for r := 0; r < b*L; r++ {
		for j := 0; j < D; j++ {
			s := a.OutProj.B[j]
			for i := 0; i < D; i++ {
				s += a.OutProj.W[j*D+i] * o[r*D+i]
			}
			y[r*D+j] = s
		}
	}
	return y
}

// TestAttentionMatchesNaive compares the streamed softmax with the whole
// score matrix, for block sizes that split the sequence evenly, unevenly
// and not at all.
func TestAttentionMatchesNaive(t *testing.T) {
	for _, causal := range []bool{false, true} {
		for _, block := range []int{1, 3, 4, 64} {
			bl := &builder[float64]{rng: rand.New(rand.NewPCG(uint64(block), 3))}
			a := bl.attention(8, 2, 9, causal, block)
			const b = 2
			x := randVec(bl.rng, b*9*8)
			scaleRow(x, 3) // large scores: the running maximum matters
			y, err := a.Forward(x, b)
			if err != nil {
				t.Fatal(err)
			}
			if e := relErr(y, naiveAttention(a, x, b)); e > 1e-13 {
				t.Errorf("causal=%v block=%d: relative error %.3g against the naive formula", causal, block, e)
			}
		}
	}
}

// TestAttentionCausality checks that under the causal mask token i's output
// does not change when a later token changes, and does without the mask.
func TestAttentionCausality(t *testing.T) {
	for _, causal := range []bool{false, true} {
		bl := &builder[float64]{rng: rand.New(rand.NewPCG(5, 5))}
		a := bl.attention(4, 2, 6, causal, 2)
		x := randVec(bl.rng, 6*4)
		y0, err := a.Forward(x, 1)
		if err != nil {
			t.Fatal(err)
		}
		y0 = append([]float64(nil), y0...)
		x[5*4] += 1 // the last token
		y1, _ := a.Forward(x, 1)
		var changed bool
		for j := 0; j < 5*4; j++ {
			changed = changed || y1[j] != y0[j]
		}
		if changed == causal {
			t.Errorf("causal=%v: outputs of tokens 0..4 changed=%v when token 5 changed", causal, changed)
		}
	}
}

// TestConvMatchesDirect compares the im2col convolution with the direct sum
// of its definition.
func TestConvMatchesDirect(t *testing.T) {
	for _, s := range []struct{ cin, cout, h, w, kh, kw, stride, pad int }{
		{3, 4, 7, 6, 3, 3, 1, 1}, {3, 4, 7, 6, 3, 3, 2, 1}, {2, 2, 5, 5, 1, 1, 1, 0}, {1, 3, 6, 7, 5, 2, 3, 2},
		// same convolutions whose kernel is wider or taller than the image
		{2, 3, 4, 2, 5, 5, 1, 2}, {1, 2, 1, 3, 3, 3, 1, 1},
	} {
		bl := &builder[float64]{rng: rand.New(rand.NewPCG(31, 37))}
		c := bl.conv(s.cin, s.cout, s.h, s.w, s.kh, s.kw, s.stride, s.pad)
		const b = 2
		x := randVec(bl.rng, b*s.cin*s.h*s.w)
		y, err := c.Forward(x, b)
		if err != nil {
			t.Fatal(err)
		}
		ho, wo := c.OutH(), c.OutW()
		want := make([]float64, b*s.cout*ho*wo)
		for n := 0; n < b; n++ {
			for o := 0; o < s.cout; o++ {
				for i := 0; i < ho; i++ {
					for j := 0; j < wo; j++ {
						v := c.Bias[o]
						for ci := 0; ci < s.cin; ci++ {
							for u := 0; u < s.kh; u++ {
								for w := 0; w < s.kw; w++ {
									yy, xx := i*s.stride-s.pad+u, j*s.stride-s.pad+w
									if yy >= 0 && yy < s.h && xx >= 0 && xx < s.w {
										v += c.Weight[((o*s.cin+ci)*s.kh+u)*s.kw+w] * x[((n*s.cin+ci)*s.h+yy)*s.w+xx]
									}
								}
							}
						}
						want[((n*s.cout+o)*ho+i)*wo+j] = v
					}
				}
			}
		}
		if e := relErr(y, want); e > 1e-14 {
			t.Errorf("%+v: relative error %.3g against the direct sum", s, e)
		}
	}
}

// TestPatchEmbedIsConv checks that the patch embedding is the convolution
// of kernel = stride = P with the same weights, tokens in raster order.
func TestPatchEmbedIsConv(t *testing.T) {
	bl := &builder[float64]{rng: rand.New(rand.NewPCG(41, 43))}
	const C, H, W, P, D, b = 3, 8, 4, 2, 5, 2
	p := &PatchEmbed[float64]{C: C, H: H, W: W, P: P, Proj: bl.linear("proj", C*P*P, D)}
	c := &Conv2d[float64]{Cin: C, Cout: D, H: H, W: W, KH: P, KW: P, Stride: P, Weight: p.Proj.W, Bias: p.Proj.B}
	x := randVec(bl.rng, b*C*H*W)
	tok, err := p.Forward(x, b)
	if err != nil {
		t.Fatal(err)
	}
	img, err := c.Forward(x, b)
	if err != nil {
		t.Fatal(err)
	}
	N := p.Tokens()
	for n := 0; n < b; n++ {
		for tk := 0; tk < N; tk++ {
			for d := 0; d < D; d++ {
				if got, want := tok[(n*N+tk)*D+d], img[(n*D+d)*N+tk]; math.Abs(got-want) > 1e-13 {
					t.Fatalf("sample %d token %d channel %d: patch embed %v, conv %v", n, tk, d, got, want)
				}
			}
		}
	}
}

// TestGroupNormAsLayerNorm checks GroupNorm with one group against LayerNorm
// over the whole C·S map (unit gain, zero bias), and that each group of the
// output has mean 0 and variance σ²/(σ² + ε).
func TestGroupNormAsLayerNorm(t *testing.T) {
	const C, S, b = 4, 5, 3
	rng := rand.New(rand.NewPCG(47, 53))
	x := randVec(rng, b*C*S)
	ones, zeros := make([]float64, C*S), make([]float64, C*S)
	fill(ones, 1)
	gn := &GroupNorm[float64]{C: C, G: 1, S: S, Gain: ones[:C], Bias: zeros[:C]}
	ln := &LayerNorm[float64]{N: C * S, Gain: ones, Bias: zeros}
	y, err := gn.Forward(x, b)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ln.Forward(x, b)
	if err != nil {
		t.Fatal(err)
	}
	if e := relErr(y, want); e > 1e-14 {
		t.Errorf("GroupNorm(G=1) against LayerNorm: relative error %.3g", e)
	}
	gn2 := &GroupNorm[float64]{C: C, G: 2, S: S, Gain: ones[:C], Bias: zeros[:C]}
	y, _ = gn2.Forward(x, b)
	m := C / 2 * S
	for g := 0; g < b*2; g++ {
		xs, ys := x[g*m:(g+1)*m], y[g*m:(g+1)*m]
		var mu, v, yv, ym float64
		for i := range xs {
			mu += xs[i] / float64(m)
			ym += ys[i] / float64(m)
		}
		for i := range xs {
			v += (xs[i] - mu) * (xs[i] - mu) / float64(m)
			yv += (ys[i] - ym) * (ys[i] - ym) / float64(m)
		}
		if math.Abs(ym) > 1e-14 || math.Abs(yv-v/(v+GroupNormEps)) > 1e-13 {
			t.Errorf("group %d: mean %v, variance %v, want 0 and %v", g, ym, yv, v/(v+GroupNormEps))
		}
	}
}

func TestTokenEmbeddingAndPoolAtGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(59, 61))
	const vocab, D, L, b = 6, 3, 4, 3
	e := &TokenEmbedding[float64]{Vocab: vocab, D: D, L: L, E: randVec(rng, vocab*D), DE: make([]float64, vocab*D)}
	ids := []int32{1, 2, 2, 0, 5, 5, 5, 3, 0, 1, 2, 3} // 4 is in no sequence
	at := []int32{3, 0, 2}
	p := &PoolAt[float64]{L: L, D: D}
	r := randVec(rng, b*D)
	loss := func() float64 {
		h, err := e.Forward(ids, b)
		if err != nil {
			t.Fatal(err)
		}
		y, err := p.Forward(h, at, b)
		if err != nil {
			t.Fatal(err)
		}
		return dot(r, y)
	}
	loss()
	dh, err := p.Backward(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Backward(dh); err != nil {
		t.Fatal(err)
	}
	for n, i := range at {
		for d := 0; d < D; d++ {
			if dh[(n*L+int(i))*D+d] != r[n*D+d] {
				t.Fatalf("∂L/∂h of sequence %d at its pooled token is %v, want %v", n, dh[(n*L+int(i))*D+d], r[n*D+d])
			}
		}
	}
	g := append([]float64(nil), e.DE...)
	checkFD(t, "token embedding ∂L/∂E", e.E, g, loss)
	if _, err := e.Forward([]int32{0, 1, 2, int32(vocab)}, 1); err == nil {
		t.Error("an id equal to Vocab was accepted")
	}
	if _, err := p.Forward(make([]float64, L*D), []int32{L}, 1); err == nil {
		t.Error("a pooling index equal to L was accepted")
	}
}

// TestSeqLayersNoAlloc checks that a float32 Forward and Backward of each
// case allocate nothing once the caches exist.
func TestSeqLayersNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	const b = 3
	for _, tc := range seqCases {
		bl := &builder[float32]{rng: rand.New(rand.NewPCG(1, 2))}
		l := buildSeq(tc.name, bl)
		x, r := randT[float32](bl.rng, b*tc.in), randT[float32](bl.rng, b*tc.out)
		allocs := testing.AllocsPerRun(5, func() {
			if _, err := l.Forward(x, b); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Backward(r); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Forward+Backward after warm-up", tc.name, allocs)
		}
	}
}

// TestSeqLayersKnownValues checks the forward pass of the simple layers on
// values worked out by hand.
func TestSeqLayersKnownValues(t *testing.T) {
	run := func(y []float64, err error) []float64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return y
	}
	mp := &MeanPool[float64]{L: 2, D: 2}
	tests := []struct {
		name      string
		got, want []float64
	}{
		{"position", run((&PositionEmbedding[float64]{L: 2, D: 2, E: []float64{1, 2, 3, 4}}).Forward([]float64{0, 1, 2, 3, 4, 5, 6, 7}, 2)),
			[]float64{1, 3, 5, 7, 5, 7, 9, 11}},
		{"classtoken", run((&ClassToken[float64]{L: 1, D: 2, C: []float64{9, 8}}).Forward([]float64{1, 2, 3, 4}, 2)),
			[]float64{9, 8, 1, 2, 9, 8, 3, 4}},
		{"meanpool", slices.Clone(run(mp.Forward([]float64{1, 2, 3, 4}, 1))), []float64{2, 3}},
		{"meanpool-prefix", run(mp.ForwardPrefix([]float64{1, 2, 3, 4}, []int32{1}, 1)), []float64{1, 2}},
		{"poolat", run((&PoolAt[float64]{L: 3, D: 1}).Forward([]float64{5, 6, 7, 1, 2, 3}, []int32{2, 0}, 2)), []float64{7, 1}},
		{"globalavgpool", run((&GlobalAvgPool[float64]{C: 2, S: 2}).Forward([]float64{1, 3, 5, 9}, 1)), []float64{2, 7}},
		{"tokenembedding", run((&TokenEmbedding[float64]{Vocab: 3, D: 2, L: 2, E: []float64{0, 1, 10, 11, 20, 21}}).Forward([]int32{2, 0}, 1)),
			[]float64{20, 21, 0, 1}},
		{"residual-relu", run((&Residual[float64]{F: &ReLU[float64]{N: 2}}).Forward([]float64{-1, 2}, 1)), []float64{-1, 4}},
		{"patchembed", run((&PatchEmbed[float64]{C: 1, H: 2, W: 4, P: 2, Proj: Linear[float64]{In: 4, Out: 1, W: []float64{1, 10, 100, 1000}, B: []float64{0}}}).Forward(
			[]float64{1, 2, 3, 4, 5, 6, 7, 8}, 1)), []float64{1 + 20 + 500 + 6000, 3 + 40 + 700 + 8000}},
	}
	for _, tc := range tests {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

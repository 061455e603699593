package eval

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/infonce/infonce/gemm"
)

// ProbeConfig configures LinearProbe.
type ProbeConfig struct {
	Epochs int     // passes over the training split
	LR     float64 // peak learning rate of Adam, decayed to 0 by a cosine
	L2     float64 // λ of the penalty (λ/2)‖W‖² (the bias is not penalised)
	Batch  int     // mini-batch size
	Seed   uint64  // seed of the mini-batch order
}

// DefaultProbeConfig is five epochs of Adam with peak learning rate 3e-3,
// λ = 1e-4 and mini-batches of 256. Its accuracy on raw MNIST pixels is the
// raw-pixel probe of docs/BENCHMARKS.md ("The default training run").
func DefaultProbeConfig() ProbeConfig {
	return ProbeConfig{Epochs: 5, LR: 3e-3, L2: 1e-4, Batch: 256, Seed: 1}
}

func (c ProbeConfig) validate() error {
	var errs []error
	if c.Epochs < 1 {
		errs = append(errs, fmt.Errorf("eval: probe epochs %d, want ≥ 1", c.Epochs))
	}
	if c.Batch < 1 {
		errs = append(errs, fmt.Errorf("eval: probe batch %d, want ≥ 1", c.Batch))
	}
	if !(c.LR > 0) || math.IsInf(c.LR, 0) {
		errs = append(errs, fmt.Errorf("eval: probe learning rate %v, want > 0", c.LR))
	}
	if !(c.L2 >= 0) || math.IsInf(c.L2, 0) {
		errs = append(errs, fmt.Errorf("eval: probe L2 %v, want ≥ 0", c.L2))
	}
	return errors.Join(errs...)
}

// LinearProbe trains a multinomial logistic regression (softmax) classifier
// on frozen features and returns its accuracy on the test split.
//
// trainX (len(trainY)×d) and testX (len(testY)×d) are row-major; labels lie
// in [0, classes). Features are standardised with the training split's
// statistics, z_j = (x_j − μ_j)/σ_j (a feature constant on the training
// split is set to 0). The model p(y|z) = softmax(Wz + b)_y minimises
//
//	L(W, b) = −(1/N) Σ_i log p(y_i|z_i) + (λ/2)‖W‖²
//
// by mini-batch Adam with a cosine-decayed learning rate over cfg.Epochs
// passes in an order drawn from cfg.Seed. Standardisation is applied to one
// mini-batch at a time, so the extra memory is O(Batch·d + classes·d).
func LinearProbe[T gemm.Float](trainX []T, trainY []int, testX []T, testY []int, d, classes int, cfg ProbeConfig) (acc float64, err error) {
	return linearProbe[T](trainX, trainY, testX, testY, d, classes, cfg)
}

// LinearProbeBytes is LinearProbe on byte features, such as raw pixels: the
// same classifier in float32, reading one mini-batch of bytes at a time, so
// that a large image set is never copied into floats.
func LinearProbeBytes(trainX []byte, trainY []int, testX []byte, testY []int, d, classes int, cfg ProbeConfig) (acc float64, err error) {
	return linearProbe[float32](trainX, trainY, testX, testY, d, classes, cfg)
}

// Feature is the element type of the features a probe reads.
type Feature interface {
	~uint8 | ~float32 | ~float64
}

func linearProbe[T gemm.Float, X Feature](trainX []X, trainY []int, testX []X, testY []int, d, classes int, cfg ProbeConfig) (acc float64, err error) {
	if err := cfg.validate(); err != nil {
		return 0, err
	}
	if d < 1 || classes < 2 {
		return 0, fmt.Errorf("eval: probe needs d ≥ 1 and at least 2 classes, got d=%d classes=%d", d, classes)
	}
	nTr, nTe := len(trainY), len(testY)
	if nTr == 0 || nTe == 0 {
		return 0, fmt.Errorf("eval: probe needs non-empty splits, got %d train and %d test items", nTr, nTe)
	}
	if len(trainX) != nTr*d || len(testX) != nTe*d {
		return 0, fmt.Errorf("eval: probe features do not match labels: train %d values for %d×%d, test %d values for %d×%d",
			len(trainX), nTr, d, len(testX), nTe, d)
	}
	for split, ys := range map[string][]int{"train": trainY, "test": testY} {
		for i, y := range ys {
			if y < 0 || y >= classes {
				return 0, fmt.Errorf("eval: probe %s label %d of item %d outside [0, %d)", split, y, i, classes)
			}
		}
	}
	mu, inv, err := standardiser(trainX, nTr, d)
	if err != nil {
		return 0, err
	}

	p := newProbe[T, X](d, classes, min(cfg.Batch, nTr), mu, inv)
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15))
	perm := make([]int, nTr)
	for i := range perm {
		perm[i] = i
	}
	steps := cfg.Epochs * ((nTr + cfg.Batch - 1) / cfg.Batch)
	t := 0
	for range cfg.Epochs {
		rng.Shuffle(nTr, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		for i0 := 0; i0 < nTr; i0 += cfg.Batch {
			idx := perm[i0:min(i0+cfg.Batch, nTr)]
			lr := cfg.LR * (1 + math.Cos(math.Pi*float64(t)/float64(steps))) / 2
			p.step(trainX, trainY, idx, lr, cfg.L2, t+1)
			t++
		}
	}
	if !p.finite() {
		return 0, errors.New("eval: probe diverged (non-finite weights); lower ProbeConfig.LR")
	}
	return p.accuracy(testX, testY), nil
}

// standardiser returns the training mean μ_j and 1/σ_j of every feature
// (0 for a feature that is constant on the training split).
func standardiser[X Feature](x []X, n, d int) (mu, inv []float64, err error) {
	mu, inv = make([]float64, d), make([]float64, d)
	for i := range n {
		for j, v := range x[i*d : (i+1)*d] {
			mu[j] += float64(v)
		}
	}
	for j := range mu {
		mu[j] /= float64(n)
	}
	for i := range n {
		for j, v := range x[i*d : (i+1)*d] {
			e := float64(v) - mu[j]
			inv[j] += e * e
		}
	}
	for j := range inv {
		if math.IsNaN(inv[j]) || math.IsInf(inv[j], 0) || math.IsNaN(mu[j]) || math.IsInf(mu[j], 0) {
			return nil, nil, fmt.Errorf("eval: probe training feature %d is not finite (NaN or Inf in the features)", j)
		}
		sigma := math.Sqrt(inv[j] / float64(n))
		if sigma > 1e-6*math.Abs(mu[j]) && sigma > 0 {
			inv[j] = 1 / sigma
		} else {
			inv[j] = 0
		}
	}
	return mu, inv, nil
}

// probe is the softmax classifier with its Adam state and the buffers of one
// mini-batch. W is classes×d so that both products run along d.
type probe[T gemm.Float, X Feature] struct {
	d, k           int
	mu, inv        []T // μ_j and 1/σ_j
	w, b           []T // W (k×d), b (k)
	gw, gb         []T // gradients
	mw, vw, mb, vb []T // Adam moments
	z              []T // standardised batch, batch×d
	s              []T // logits, then dL/dlogits, batch×k
}

func newProbe[T gemm.Float, X Feature](d, k, batch int, mu, inv []float64) *probe[T, X] {
	p := &probe[T, X]{
		d: d, k: k, mu: make([]T, d), inv: make([]T, d),
		w: make([]T, k*d), b: make([]T, k),
		gw: make([]T, k*d), gb: make([]T, k),
		mw: make([]T, k*d), vw: make([]T, k*d), mb: make([]T, k), vb: make([]T, k),
		z: make([]T, batch*d), s: make([]T, batch*k),
	}
	for j := range d {
		p.mu[j], p.inv[j] = T(mu[j]), T(inv[j])
	}
	return p
}

// load standardises rows idx of x into z.
func (p *probe[T, X]) load(x []X, idx []int) {
	d := p.d
	for r, i := range idx {
		src, dst := x[i*d:(i+1)*d], p.z[r*d:(r+1)*d]
		mu, inv := p.mu[:len(src)], p.inv[:len(src)]
		for j, v := range src {
			dst[j] = (T(v) - mu[j]) * inv[j]
		}
	}
}

// logits computes S = Z Wᵀ + b for the first m rows of z.
func (p *probe[T, X]) logits(m int) {
	gemm.Gemm(false, true, m, p.k, p.d, 1, p.z, p.d, p.w, p.d, 0, p.s, p.k)
	for r := range m {
		row := p.s[r*p.k : (r+1)*p.k]
		for c := range row {
			row[c] += p.b[c]
		}
	}
}

// step is one Adam step (t is 1-based) on the mini-batch idx.
func (p *probe[T, X]) step(x []X, y []int, idx []int, lr, l2 float64, t int) {
	m, k := len(idx), p.k
	p.load(x, idx)
	p.logits(m)
	// dL/dS = (softmax(S) − onehot(y)) / m, row by row.
	clear(p.gb)
	for r, i := range idx {
		row := p.s[r*k : (r+1)*k]
		mx := float64(row[0])
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		var sum float64
		for _, v := range row {
			sum += math.Exp(float64(v) - mx)
		}
		for c, v := range row {
			g := math.Exp(float64(v)-mx) / sum
			if c == y[i] {
				g--
			}
			row[c] = T(g / float64(m))
			p.gb[c] += row[c]
		}
	}
	// dL/dW = Gᵀ Z + λW.
	copy(p.gw, p.w)
	gemm.Gemm(true, false, k, p.d, m, 1, p.s, k, p.z, p.d, T(l2), p.gw, p.d)
	adam(p.w, p.gw, p.mw, p.vw, lr, t)
	adam(p.b, p.gb, p.mb, p.vb, lr, t)
}

// adam is one Adam update (Kingma & Ba 2015) with β₁ = 0.9, β₂ = 0.999,
// ε = 1e-8 at step t.
func adam[T gemm.Float](w, g, m, v []T, lr float64, t int) {
	const b1, b2, eps = 0.9, 0.999, 1e-8
	bc1 := 1 - math.Pow(b1, float64(t))
	bc2 := 1 - math.Pow(b2, float64(t))
	for i := range w {
		gi := float64(g[i])
		mi := b1*float64(m[i]) + (1-b1)*gi
		vi := b2*float64(v[i]) + (1-b2)*gi*gi
		m[i], v[i] = T(mi), T(vi)
		w[i] = T(float64(w[i]) - lr*(mi/bc1)/(math.Sqrt(vi/bc2)+eps))
	}
}

func (p *probe[T, X]) finite() bool {
	for _, v := range p.w {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return false
		}
	}
	return true
}

// accuracy is the fraction of rows of x whose argmax logit is their label.
func (p *probe[T, X]) accuracy(x []X, y []int) float64 {
	batch := len(p.z) / p.d
	idx := make([]int, 0, batch)
	hits := 0
	for i0 := 0; i0 < len(y); i0 += batch {
		idx = idx[:0]
		for i := i0; i < min(i0+batch, len(y)); i++ {
			idx = append(idx, i)
		}
		p.load(x, idx)
		p.logits(len(idx))
		for r, i := range idx {
			if argmax(p.s[r*p.k:(r+1)*p.k]) == y[i] {
				hits++
			}
		}
	}
	return frac(hits, len(y))
}

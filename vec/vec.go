package vec

import (
	"fmt"
	"sync/atomic"
)

// kernels is one implementation of every kernel. Each function works on
// whole slices whose lengths the exported wrappers have checked.
type kernels struct {
	name         string
	max          func(x []float32) float32
	expSum       func(x []float32, shift float32) float32
	expScale     func(dst, x []float32, shift, scale float32) float32
	expPairScale func(dst, x []float32, a float32, b []float32, scale float32) float32
	adamW        func(w, g, m, v []float32, c adamWConsts)
	relu         func(dst, x []float32)
	reluGrad     func(dx, dy, y []float32)
	add          func(dst, x []float32)
	addBF16      func(dst []float32, x []uint16)
	toBF16       func(dst []uint16, x []float32)
	fromBF16     func(dst []float32, x []uint16)
	dot          func(x, y []float32) float64
	scale        func(dst, x []float32, a float32)
	scaleSub     func(dst, g, y []float32, c, a float32)
	gelu         func(dst, x []float32)
	geluGrad     func(dx, dy, x []float32)

	moments             func(x []float32, shift float64) (s1, s2 float64)
	normAffine          func(y, x, g, b []float32, c Norm)
	normAffineScalar    func(y, x []float32, c Norm, g, b float32)
	normGradAffine      func(dg, db, dy, x, g []float32, c Norm) (sd, sdx float64)
	normGradSums        func(dy, x []float32, c Norm) (sdy, sdyx float64)
	normGradInput       func(dx, dy, x, g []float32, c Norm, md, mdx float32)
	normGradInputScalar func(dx, dy, x []float32, c Norm, g, md, mdx float32)
}

// current is the implementation in use: the fastest at start-up (best),
// or the one chosen by Use.
var current atomic.Pointer[kernels]

func init() { current.Store(best()) }

// kernel returns the implementation in use.
func kernel() *kernels { return current.Load() }

// implementations lists every implementation usable on this CPU, the
// portable one first; the tests run each of them.
func implementations() []*kernels {
	if a := accelerated(); a != nil {
		return []*kernels{&portable, a}
	}
	return []*kernels{&portable}
}

func best() *kernels {
	if a := accelerated(); a != nil {
		return a
	}
	return &portable
}

// Impl names the implementation in use: "avx2" (AVX2+FMA assembly) or "go".
func Impl() string { return kernel().name }

// Use makes the named implementation ("go", the portable code, or "avx2",
// the assembly, where the CPU and the build have it) the one of every later
// call, and returns the name of the previous one, so that a test can run
// the same computation on both and restore the default. An unknown or
// unavailable name is an error and changes nothing.
func Use(name string) (previous string, err error) {
	for _, k := range implementations() {
		if k.name == name {
			return current.Swap(k).name, nil
		}
	}
	return "", fmt.Errorf("vec: implementation %q is not available here (this build has %s)", name, names())
}

// names lists the implementations available here.
func names() string {
	s := ""
	for i, k := range implementations() {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%q", k.name)
	}
	return s
}

// sameLen panics if a kernel's slices differ in length, a programming
// error of the caller.
func sameLen(kernel string, a, b int) {
	if a != b {
		panic(fmt.Sprintf("vec: %s: slice lengths differ: %d and %d", kernel, a, b))
	}
}

// Max returns the largest entry of x, skipping NaNs; it is −Inf if x is
// empty or holds only NaNs.
func Max(x []float32) float32 { return kernel().max(x) }

// ExpSum returns Σ_i exp(x_i − shift): with shift = max_i x_i it is the
// sum z of the log-sum-exp m + log z, whose terms all lie in (0, 1]. The
// terms are summed in float32 over 16 interleaved partial sums.
func ExpSum(x []float32, shift float32) float32 { return kernel().expSum(x, shift) }

// ExpScale sets dst_i = scale·exp(x_i − shift), a row of softmax
// probabilities when shift is the row's log-sum-exp, and returns
// Σ_i dst_i·x_i. dst and x must have the same length; dst may be x.
func ExpScale(dst, x []float32, shift, scale float32) float32 {
	sameLen("ExpScale", len(dst), len(x))
	return kernel().expScale(dst, x, shift, scale)
}

// ExpPairScale sets dst_i = scale·(exp(x_i − a) + exp(x_i − b_i)): for a
// row i of logits x_j = S_ij, a = lse_j S_ij and b_j = lse_i S_ij, it is
// scale times the sum of the row and column softmaxes P_ij + Q_ij of the
// symmetric InfoNCE gradient. It returns Σ_i dst_i·x_i. dst, x and b must
// have the same length; dst may be x.
func ExpPairScale(dst, x []float32, a float32, b []float32, scale float32) float32 {
	sameLen("ExpPairScale", len(x), len(dst))
	sameLen("ExpPairScale", len(x), len(b))
	return kernel().expPairScale(dst, x, a, b, scale)
}

// AdamWStep holds the scalars of one AdamW step at step t (Loshchilov &
// Hutter 2019, Algorithm 2, the schedule multiplier folded into LR).
type AdamWStep struct {
	Beta1, Beta2 float32 // β₁, β₂ in [0, 1)
	Bias1, Bias2 float32 // bias corrections 1−β₁ᵗ and 1−β₂ᵗ, in (0, 1]
	Eps          float32 // ε > 0
	LR           float32 // η
	Decay        float32 // λ, the decoupled weight decay
}

// adamWConsts is the layout the assembly reads: β₁, 1−β₁, β₂, 1−β₂,
// 1/(1−β₁ᵗ), 1/(1−β₂ᵗ), ε, η, λ.
type adamWConsts = [9]float32

// AdamW applies one AdamW step element by element:
//
//	m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,
//	m̂ = m/(1−β₁ᵗ),  v̂ = v/(1−β₂ᵗ),
//	w ← w − η·(m̂/(√v̂ + ε) + λw),
//
// in float32, with a correctly rounded square root and division (the
// bias corrections are applied as multiplications by their reciprocals).
// w, g, m and v must have the same length.
func AdamW(w, g, m, v []float32, s AdamWStep) {
	sameLen("AdamW", len(w), len(g))
	sameLen("AdamW", len(w), len(m))
	sameLen("AdamW", len(w), len(v))
	c := adamWConsts{s.Beta1, 1 - s.Beta1, s.Beta2, 1 - s.Beta2, 1 / s.Bias1, 1 / s.Bias2, s.Eps, s.LR, s.Decay}
	kernel().adamW(w, g, m, v, c)
}

// ReLU sets dst_i = max(x_i, 0). A NaN stays NaN; the sign of a zero
// result is not specified. dst and x must have the same length; dst may
// be x.
func ReLU(dst, x []float32) {
	sameLen("ReLU", len(dst), len(x))
	kernel().relu(dst, x)
}

// ReLUGrad sets dx_i = dy_i where y_i > 0 and 0 elsewhere (also where y_i
// is NaN): the gradient of y = max(x, 0) given y. The slices must have the
// same length; dx may be dy.
func ReLUGrad(dx, dy, y []float32) {
	sameLen("ReLUGrad", len(dx), len(dy))
	sameLen("ReLUGrad", len(dx), len(y))
	kernel().reluGrad(dx, dy, y)
}

// Add sets dst_i += x_i. dst and x must have the same length.
func Add(dst, x []float32) {
	sameLen("Add", len(dst), len(x))
	kernel().add(dst, x)
}

// AddBF16 sets dst_i += x_i, x in bfloat16 (the upper 16 bits of a
// float32), each x_i widened exactly to float32 before the float32 sum.
// dst and x must have the same length.
func AddBF16(dst []float32, x []uint16) {
	sameLen("AddBF16", len(dst), len(x))
	kernel().addBF16(dst, x)
}

// ToBF16 sets dst_i = bf16(x_i): x_i rounded to the nearest bfloat16, ties
// to even (a value beyond the largest bfloat16 becomes ±Inf), and a NaN
// stays a NaN, made quiet. dst and x must have the same length.
func ToBF16(dst []uint16, x []float32) {
	sameLen("ToBF16", len(dst), len(x))
	kernel().toBF16(dst, x)
}

// FromBF16 sets dst_i = x_i, x in bfloat16, widened exactly to float32.
// dst and x must have the same length.
func FromBF16(dst []float32, x []uint16) {
	sameLen("FromBF16", len(dst), len(x))
	kernel().fromBF16(dst, x)
}

// Dot returns Σ_i x_i·y_i with the products and the sum in float64 (a
// float32 product is exact in float64), so that a long sum such as the
// squared norm of a whole gradient buffer keeps float64 accuracy. x and y
// must have the same length.
func Dot(x, y []float32) float64 {
	sameLen("Dot", len(x), len(y))
	return kernel().dot(x, y)
}

// Scale sets dst_i = a·x_i. dst and x must have the same length; dst may
// be x.
func Scale(dst, x []float32, a float32) {
	sameLen("Scale", len(dst), len(x))
	kernel().scale(dst, x, a)
}

// ScaleSub sets dst_i = a·(g_i − c·y_i), the backward pass of y = x/ν
// (dx = (dy − y(y·dy))/ν); g_i − c·y_i is rounded to float32 once (a fused
// multiply-add) by the assembly, and via float64 by the portable code. The slices must
// have the same length; dst may be g or y.
func ScaleSub(dst, g, y []float32, c, a float32) {
	sameLen("ScaleSub", len(dst), len(g))
	sameLen("ScaleSub", len(dst), len(y))
	kernel().scaleSub(dst, g, y, c, a)
}

// GELU sets dst_i = x_i Φ(x_i), the Gaussian error linear unit, Φ the
// standard normal CDF. With u = |x| and the Mills ratio M(u) = Φ(−u)/φ(u),
// φ(u) = exp(−u²/2)/√(2π) the normal density,
//
//	Φ(−u) = exp(−u²/2) · M(u)/√(2π),   M(u)/√(2π) ≈ w·T(v),
//	w = 1/(u + 2),  v = (1.5u − 2)·w,
//	x Φ(x) = max(x, 0) − u·Φ(−u),
//
// with T a polynomial of degree 10 (relative error 2.3·10⁻⁸, see geluT)
// by fused multiply-adds, one division, and the exponential of this
// package with its argument reduced from the unrounded −u²/2. The error
// is below 1 ulp of max(1, |x_i|), that is 2⁻²³·max(1, |x_i|): measured over every float32 with
// 2⁻³⁰ ≤ |x| < 20, 0.65 for the assembly and 0.50 for the portable code,
// which takes the same formulas in float64. u is clamped to 14:
// exp(−u²/2) is taken as 0 from u = 13.2 on, where Φ(−u) < 10⁻³⁹.
// dst(+Inf) = +Inf, dst(−Inf) = 0, a NaN stays NaN. dst and x must have
// the same length; dst may be x.
func GELU(dst, x []float32) {
	sameLen("GELU", len(dst), len(x))
	kernel().gelu(dst, x)
}

// GELUGrad sets dx_i = dy_i·(Φ(x_i) + x_i φ(x_i)), the backward pass of
// GELU, with Φ and φ recomputed from x as in GELU:
//
//	Φ(x) + x φ(x) = 1 − e·(m − u/√(2π))  for x ≥ +0,
//	                e·(m − u/√(2π))      for x ≤ −0,
//
// e = exp(−u²/2), m = w·T(v), each form rounded once (a fused
// multiply-add in the assembly). The error of the factor Φ + xφ is below 1.5 ulp of
// max(1, |x_i|): measured over every float32 with 2⁻³⁰ ≤ |x| < 20, 1.2
// for the assembly and 0.54 for the portable code. The factor is 1 at
// +Inf and 0 at −Inf, and a NaN in x or dy gives a NaN. The slices must
// have the same length; dx may be dy or x.
func GELUGrad(dx, dy, x []float32) {
	sameLen("GELUGrad", len(dx), len(dy))
	sameLen("GELUGrad", len(dx), len(x))
	kernel().geluGrad(dx, dy, x)
}

// Moments returns s1 = Σ_i (x_i − shift) and s2 = Σ_i (x_i − shift)², the
// differences, squares and sums in float64: with m = s1/n the mean of x is
// shift + m and its variance s2/n − m², which loses little to
// cancellation when shift is near the mean (one of the x_i, say).
func Moments(x []float32, shift float64) (s1, s2 float64) { return kernel().moments(x, shift) }

// Norm is the standardisation x̂ = ((x − Hi) − Lo)·R of the rows of
// LayerNorm and the groups of GroupNorm: Hi + Lo is the mean μ, Hi =
// float32(μ) and Lo the float32 rounding of μ − Hi, so that x − μ keeps
// float32 accuracy when |μ| is much larger than the spread of x, and R is
// the reciprocal standard deviation 1/√(σ² + ε). Every kernel computes x̂
// with these three float32 operations in this order, so a backward pass
// recomputes exactly the x̂ of the forward pass.
type Norm struct{ Hi, Lo, R float32 }

// NewNorm returns the Norm of mean mu and reciprocal standard deviation r.
func NewNorm(mu, r float64) Norm {
	hi := float32(mu)
	return Norm{Hi: hi, Lo: float32(mu - float64(hi)), R: float32(r)}
}

// XHat returns x̂ = ((x − Hi) − Lo)·R, as the kernels compute it.
func (c Norm) XHat(x float32) float32 { return ((x - c.Hi) - c.Lo) * c.R }

// NormAffine sets y_i = g_i·x̂_i + b_i, x̂ = c.XHat(x_i): the output of
// LayerNorm. The assembly rounds g_i·x̂_i + b_i once (a fused
// multiply-add). The slices must have the same length; y may be x.
func NormAffine(y, x, g, b []float32, c Norm) {
	sameLen("NormAffine", len(y), len(x))
	sameLen("NormAffine", len(y), len(g))
	sameLen("NormAffine", len(y), len(b))
	kernel().normAffine(y, x, g, b, c)
}

// NormAffineScalar sets y_i = g·x̂_i + b, x̂ = c.XHat(x_i): the output of
// GroupNorm for one channel. y and x must have the same length; y may be x.
func NormAffineScalar(y, x []float32, c Norm, g, b float32) {
	sameLen("NormAffineScalar", len(y), len(x))
	kernel().normAffineScalar(y, x, c, g, b)
}

// NormGradAffine accumulates the gain and bias gradients of one row of
// LayerNorm, db_i += dy_i and dg_i += dy_i·x̂_i (x̂ = c.XHat(x_i)), and
// returns sd = Σ_i d_i and sdx = Σ_i d_i·x̂_i for d_i = dy_i·g_i (rounded
// to float32), with the products and sums in float64. The slices must
// have the same length.
func NormGradAffine(dg, db, dy, x, g []float32, c Norm) (sd, sdx float64) {
	sameLen("NormGradAffine", len(dy), len(dg))
	sameLen("NormGradAffine", len(dy), len(db))
	sameLen("NormGradAffine", len(dy), len(x))
	sameLen("NormGradAffine", len(dy), len(g))
	return kernel().normGradAffine(dg, db, dy, x, g, c)
}

// NormGradSums returns sdy = Σ_i dy_i and sdyx = Σ_i dy_i·x̂_i (x̂ =
// c.XHat(x_i)) with the products and sums in float64: the bias and gain
// gradients of one channel of GroupNorm. dy and x must have the same
// length.
func NormGradSums(dy, x []float32, c Norm) (sdy, sdyx float64) {
	sameLen("NormGradSums", len(dy), len(x))
	return kernel().normGradSums(dy, x, c)
}

// NormGradInput sets dx_i = (dy_i·g_i − (md + x̂_i·mdx))·c.R, x̂ =
// c.XHat(x_i): the input gradient of LayerNorm, md and mdx being the
// means of d = dy ⊙ g and of d ⊙ x̂. The slices must have the same
// length; dx may be dy.
func NormGradInput(dx, dy, x, g []float32, c Norm, md, mdx float32) {
	sameLen("NormGradInput", len(dx), len(dy))
	sameLen("NormGradInput", len(dx), len(x))
	sameLen("NormGradInput", len(dx), len(g))
	kernel().normGradInput(dx, dy, x, g, c, md, mdx)
}

// NormGradInputScalar sets dx_i = (g·dy_i − (md + x̂_i·mdx))·c.R, x̂ =
// c.XHat(x_i): the input gradient of one channel of GroupNorm. The slices
// must have the same length; dx may be dy.
func NormGradInputScalar(dx, dy, x []float32, c Norm, g, md, mdx float32) {
	sameLen("NormGradInputScalar", len(dx), len(dy))
	sameLen("NormGradInputScalar", len(dx), len(x))
	kernel().normGradInputScalar(dx, dy, x, c, g, md, mdx)
}

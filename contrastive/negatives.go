package contrastive

import (
	"errors"
	"fmt"
	"math"
)

// Negatives sets how an InfoNCE objective weighs its negatives: the
// hard-negative reweighting of Robinson et al. 2021 ("Contrastive Learning
// with Hard Negative Samples") and the debiasing of Chuang et al. 2020
// ("Debiased Contrastive Learning"). The zero value is plain InfoNCE, and
// an objective whose Negatives is the zero value runs its plain code,
// unchanged.
//
// For one anchor with positives P (|P| = M: its pair, or every row with
// its id under false-negative masking) and negatives N (|N| = n, the rest
// of the global batch, or MoCo's queue), with logits x_j = s·cos_j,
//
//	Pos = Σ_{j∈P} e^{x_j}
//	R   = Σ_{j∈N} e^{β x_j}·e^{x_j} / Σ_{j∈N} e^{β x_j}
//	n·g = n·max( (R − τ⁺·Pos/M) / (1 − τ⁺),  e^{−s} )
//	ℓ   = −log( Pos / (Pos + n·g) ).
//
// R is the mean of e^{x_j} over the negatives under the importance
// weights w_j = e^{β x_j} / ((1/n)·Σ_k e^{β x_k}) (mean one): the
// estimator of E_{x⁻∼q_β}[e^{f(x)ᵀf(x⁻)}] with q_β ∝ e^{β f(x)ᵀf(x⁻)}
// (Robinson et al. 2021, §3, the hard-sampling objective and its
// importance-sampled estimator; β multiplies the temperature-scaled
// score, the logit, as in the paper's reference estimator). The max
// is the debiased estimator g(x, {u_i}, {v_i}) of L^{N,M}_Debiased
// (Chuang et al. 2020, §3), whose floor e^{−1/t} is e^{−s} here, the
// least e^{x} can be (cos = −1). With β = 0 and τ⁺ = 0, n·g = Σ_{j∈N}
// e^{x_j} (for unit vectors the floor binds only when every negative has
// cos = −1) and ℓ is the plain InfoNCE term lse_j x_j − lse_{j∈P} x_j.
//
// Since everything is a function of the logits and of s, dℓ/dt =
// Σ_j (dℓ/dx_j)·x_j, plus, when the floor binds, the floor's own
// dℓ/dt = −n·s·e^{−s}/(Pos + n·g).
type Negatives struct {
	// Beta is β ≥ 0, the concentration of the hard-negative distribution
	// q_β (0: negatives weighed uniformly).
	Beta float64
	// TauPlus is τ⁺ ∈ [0, 1), the class prior of the debiasing (0: none).
	TauPlus float64
}

// On reports whether the negatives are reweighted or debiased at all.
func (g Negatives) On() bool { return g.Beta != 0 || g.TauPlus != 0 }

// Validate reports a β or τ⁺ out of range.
func (g Negatives) Validate() error {
	var errs []error
	if !(g.Beta >= 0) || math.IsInf(g.Beta, 0) {
		errs = append(errs, fmt.Errorf("contrastive: hard-negative β %g must be finite and not negative", g.Beta))
	}
	if !(g.TauPlus >= 0 && g.TauPlus < 1) {
		errs = append(errs, fmt.Errorf("contrastive: debiasing class prior τ⁺ %g must be in [0, 1)", g.TauPlus))
	}
	return errors.Join(errs...)
}

// negAcc accumulates one anchor's sums over its row of logits, each as a
// running log-sum-exp (maximum m, rescaled sum z).
type negAcc struct {
	am, az float64 // log Σ_{j∈N} e^{(1+β)x_j}
	zm, zz float64 // log Σ_{j∈N} e^{β x_j}
	pm, pz float64 // log Pos = log Σ_{j∈P} e^{x_j}
	n, m   int     // |N|, |P|
}

func (a *negAcc) reset() {
	*a = negAcc{am: math.Inf(-1), zm: math.Inf(-1), pm: math.Inf(-1)}
}

// add folds one logit x into the sums, as a positive or as a negative.
func (a *negAcc) add(beta, x float64, pos bool) {
	if pos {
		lseAdd1(&a.pm, &a.pz, x)
		a.m++
		return
	}
	lseAdd1(&a.am, &a.az, (1+beta)*x)
	lseAdd1(&a.zm, &a.zz, beta*x)
	a.n++
}

// lseAdd1 folds one value x into the running log-sum-exp (m, z).
func lseAdd1(m, z *float64, x float64) {
	switch {
	case x > *m:
		*z = *z*math.Exp(*m-x) + 1
		*m = x
	case x == *m && math.IsInf(x, -1):
		// e^{−∞} adds nothing.
	default:
		*z += math.Exp(x - *m) // a NaN x poisons z
	}
}

// The per-anchor terms of the gradient, computed by the anchor's owner
// from its accumulated sums and gathered, like the log-sum-exps of the
// plain objectives, so that every rank can form dℓ/dx_j for any anchor.
const (
	ngLogD = iota // log(Pos + n·g)
	ngLogP        // log Pos
	ngLogZ        // log Σ_{j∈N} e^{β x_j}
	ngLogR        // log R
	ngCPos        // 1 − κ·n·τ⁺/(M·(1 − τ⁺)), κ = 1 unless the floor binds
	ngCNeg        // κ·n/(1 − τ⁺)
	ngWidth
)

// terms writes the anchor's gradient terms into t (ngWidth values) and
// returns its loss ℓ and the floor's direct share of dℓ/dt.
func (g Negatives) terms(a *negAcc, s float64, t []float64) (loss, dtFloor float64) {
	logP := lseValue(a.pm, a.pz)
	t[ngLogP] = logP
	if a.n == 0 { // no negatives: ℓ = −log(Pos/Pos) = 0
		t[ngLogD], t[ngLogZ], t[ngLogR], t[ngCPos], t[ngCNeg] = logP, 0, 0, 1, 0
		return 0, 0
	}
	tau, n, M := g.TauPlus, float64(a.n), float64(a.m)
	logZ := lseValue(a.zm, a.zz)
	logR := lseValue(a.am, a.az) - logZ
	logPM := logP - math.Log(M) // log of the positives' mean Pos/M
	// g = max((R − τ⁺·Pos/M)/(1 − τ⁺), e^{−s}), computed relative to the
	// largest of its three exponentials so that nothing overflows.
	c := max(logR, logPM, -s)
	r, p, f := math.Exp(logR-c), math.Exp(logPM-c), math.Exp(-s-c)
	raw := (r - tau*p) / (1 - tau)
	kappa, gg := 1.0, raw
	if !(raw > f) && !math.IsNaN(raw) {
		kappa, gg = 0, f
	}
	logNg := math.Log(n) + c + math.Log(gg)
	logD := logAddExp(logP, logNg)
	t[ngLogD], t[ngLogZ], t[ngLogR] = logD, logZ, logR
	t[ngCPos] = 1 - kappa*n*tau/(M*(1-tau))
	t[ngCNeg] = kappa * n / (1 - tau)
	if kappa == 0 {
		dtFloor = -s * math.Exp(math.Log(n)-s-logD)
	}
	return logD - logP, dtFloor
}

// grad is dℓ/dx for a logit x of the anchor whose terms are t: for a
// positive,
//
//	e^{x}/D·(1 − κ·n·τ⁺/(M(1−τ⁺))) − e^{x}/Pos,
//
// and for a negative (dR/dx = e^{βx}/Z·((1+β)e^{x} − β·R)),
//
//	κ·n/(1−τ⁺) · ((1+β)·e^{(1+β)x}/(Z·D) − β·e^{βx}·R/(Z·D)),
//
// with D = Pos + n·g and Z = Σ_{j∈N} e^{β x_j}.
func (g Negatives) grad(t []float64, x float64, pos bool) float64 {
	if pos {
		return t[ngCPos]*math.Exp(x-t[ngLogD]) - math.Exp(x-t[ngLogP])
	}
	if t[ngCNeg] == 0 {
		return 0
	}
	b := g.Beta
	base := -t[ngLogZ] - t[ngLogD]
	e := (1 + b) * math.Exp((1+b)*x+base)
	if b != 0 {
		e -= b * math.Exp(b*x+t[ngLogR]+base)
	}
	return t[ngCNeg] * e
}

// logAddExp is log(e^a + e^b), stable.
func logAddExp(a, b float64) float64 {
	if a < b {
		a, b = b, a
	}
	if math.IsInf(a, -1) {
		return a
	}
	return a + math.Log1p(math.Exp(b-a))
}

package contrastive

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/infonce/infonce/gemm"
)

// Hard-negative reweighting and debiasing: float64 gradients against
// finite differences of references written straight from the papers'
// estimators over the full matrices, K ranks against one, the limit β → 0
// against the plain losses, and the check that β really moves the gradient.

// anchorRef is −log(Pos/(Pos + n·g)) for one anchor, from its positive and
// negative logits: Pos = Σ_P e^{x}, R = Σ_N e^{βx}e^{x}/Σ_N e^{βx}, g =
// max((R − τ⁺·Pos/M)/(1 − τ⁺), e^{−s}). floored tells whether the floor
// binds.
func anchorRef(pos, neg []float64, s float64, g Negatives) (loss float64, floored bool) {
	var P, A, Z float64
	for _, x := range pos {
		P += math.Exp(x)
	}
	if len(neg) == 0 {
		return 0, false
	}
	for _, x := range neg {
		A += math.Exp(g.Beta*x) * math.Exp(x)
		Z += math.Exp(g.Beta * x)
	}
	R := A / Z
	est := (R - g.TauPlus*P/float64(len(pos))) / (1 - g.TauPlus)
	if floor := math.Exp(-s); !(est > floor) {
		est, floored = floor, true
	}
	return -math.Log(P / (P + float64(len(neg))*est)), floored
}

// clipNegRef is 1/(2B)·Σ_i ℓ_row(i) + 1/(2B)·Σ_j ℓ_col(j); floors counts
// the anchors whose floor binds.
func clipNegRef(u, v []float64, B, d int, s float64, ids []int32, g Negatives) (L float64, floors int) {
	S := func(i, j int) float64 { return s * dot(u[i*d:i*d+d], v[j*d:j*d+d]) }
	isPos := func(i, j int) bool {
		if ids == nil {
			return i == j
		}
		return ids[i] == ids[j]
	}
	for i := 0; i < B; i++ {
		var pr, nr, pc, nc []float64
		for j := 0; j < B; j++ {
			if isPos(i, j) {
				pr, pc = append(pr, S(i, j)), append(pc, S(j, i))
			} else {
				nr, nc = append(nr, S(i, j)), append(nc, S(j, i))
			}
		}
		lr, fr := anchorRef(pr, nr, s, g)
		lc, fc := anchorRef(pc, nc, s, g)
		L += lr + lc
		if fr {
			floors++
		}
		if fc {
			floors++
		}
	}
	return L / float64(2*B), floors
}

// ntxentNegRef is 1/(2B)·Σ_a ℓ(a) over the views z = [z1; z2], the
// partner of view a being (a+B) mod 2B.
func ntxentNegRef(z1, z2 []float64, B, d int, s float64, g Negatives) (L float64, floors int) {
	z := append(append([]float64(nil), z1...), z2...)
	N := 2 * B
	for a := 0; a < N; a++ {
		var neg []float64
		p := (a + B) % N
		for m := 0; m < N; m++ {
			if m != a && m != p {
				neg = append(neg, s*dot(z[a*d:a*d+d], z[m*d:m*d+d]))
			}
		}
		la, fa := anchorRef([]float64{s * dot(z[a*d:a*d+d], z[p*d:p*d+d])}, neg, s, g)
		L += la
		if fa {
			floors++
		}
	}
	return L / float64(N), floors
}

// ctrNegRef is 1/B·Σ_i ℓ(i) with query i's key as the positive and the
// queue's keys as the negatives.
func ctrNegRef(q, k, queue []float64, B, d int, s float64, g Negatives) (L float64, floors int) {
	K := len(queue) / d
	for i := 0; i < B; i++ {
		qi := q[i*d : i*d+d]
		neg := make([]float64, K)
		for j := range neg {
			neg[j] = s * dot(qi, queue[j*d:j*d+d])
		}
		li, fi := anchorRef([]float64{s * dot(qi, k[i*d:i*d+d])}, neg, s, g)
		L += li
		if fi {
			floors++
		}
	}
	return L / float64(B), floors
}

// negCase is one objective under test on one process: compute runs it at
// scale s and returns the loss, dL/dt and the gradients of inputs; ref is
// the reference loss (and its count of floored anchors) at scale s.
type negCase struct {
	name    string
	inputs  [][]float64
	compute func(g Negatives, s float64) (loss, dt float64, grads [][]float64, err error)
	ref     func(g Negatives, s float64) (float64, int)
}

func negCases(rng *rand.Rand) []negCase {
	const B, d, K = 6, 4, 7
	u, v := unitRows(rng, B, d), unitRows(rng, B, d)
	ids := []int32{0, 1, 0, 2, 1, 0}
	clip := func(name string, ids []int32) negCase {
		return negCase{name: name, inputs: [][]float64{u, v},
			compute: func(g Negatives, s float64) (float64, float64, [][]float64, error) {
				c := CLIP[float64]{Chunk: 4, MaskFalseNegatives: ids != nil, Negatives: g}
				in := CLIPInput[float64]{U: u, V: v, D: d, Counts: []int{B}, Scale: s, IDs: ids,
					DU: make([]float64, B*d), DV: make([]float64, B*d)}
				r, err := c.Compute(context.Background(), Single{}, in)
				return r.Loss, r.DT, [][]float64{in.DU, in.DV}, err
			},
			ref: func(g Negatives, s float64) (float64, int) { return clipNegRef(u, v, B, d, s, ids, g) },
		}
	}
	z1, z2 := unitRows(rng, B, d), unitRows(rng, B, d)
	q1, k2, q2, k1 := unitRows(rng, B, d), unitRows(rng, B, d), unitRows(rng, B, d), unitRows(rng, B, d)
	queue := NewQueue[float64](K, d, 5)
	moco := func(name string, sym bool) negCase {
		inputs := [][]float64{q1}
		if sym {
			inputs = append(inputs, q2)
		}
		return negCase{name: name, inputs: inputs,
			compute: func(g Negatives, s float64) (float64, float64, [][]float64, error) {
				m := MoCo[float64]{Queue: queue, Symmetric: sym, Chunk: 3, Negatives: g}
				in := MoCoInput[float64]{Q1: q1, K2: k2, D: d, Counts: []int{B}, Scale: s, DQ1: make([]float64, B*d)}
				grads := [][]float64{in.DQ1}
				if sym {
					in.Q2, in.K1, in.DQ2 = q2, k1, make([]float64, B*d)
					grads = append(grads, in.DQ2)
				}
				r, err := m.Compute(context.Background(), Single{}, in)
				return r.Loss, r.DT, grads, err
			},
			ref: func(g Negatives, s float64) (float64, int) {
				l1, f1 := ctrNegRef(q1, k2, queue.Data(), B, d, s, g)
				if !sym {
					return l1, f1
				}
				l2, f2 := ctrNegRef(q2, k1, queue.Data(), B, d, s, g)
				return (l1 + l2) / 2, f1 + f2
			},
		}
	}
	return []negCase{
		clip("clip", nil),
		clip("clip masked", ids),
		{name: "ntxent", inputs: [][]float64{z1, z2},
			compute: func(g Negatives, s float64) (float64, float64, [][]float64, error) {
				n := NTXent[float64]{Chunk: 5, Negatives: g}
				in := NTXentInput[float64]{Z1: z1, Z2: z2, D: d, Counts: []int{B}, Scale: s,
					DZ1: make([]float64, B*d), DZ2: make([]float64, B*d)}
				r, err := n.Compute(context.Background(), Single{}, in)
				return r.Loss, r.DT, [][]float64{in.DZ1, in.DZ2}, err
			},
			ref: func(g Negatives, s float64) (float64, int) { return ntxentNegRef(z1, z2, B, d, s, g) },
		},
		moco("moco", false),
		moco("moco symmetric", true),
	}
}

// negSettings are the β and τ⁺ under test; the last makes the floor bind
// for some anchors (a large τ⁺ and a small logit scale).
var negSettings = []struct {
	name   string
	g      Negatives
	t      float64
	floors bool
}{
	{"hard β=0.5", Negatives{Beta: 0.5}, math.Log(4), false},
	{"hard β=2", Negatives{Beta: 2}, math.Log(10), false},
	{"debiased τ⁺=0.1", Negatives{TauPlus: 0.1}, math.Log(4), false},
	{"hard and debiased", Negatives{Beta: 1, TauPlus: 0.1}, math.Log(5), false},
	{"debiased, floor binds", Negatives{Beta: 0.5, TauPlus: 0.6}, 1, true},
}

func TestNegativesGradientFiniteDifference(t *testing.T) {
	for _, st := range negSettings {
		for _, tc := range negCases(rand.New(rand.NewPCG(31, 0))) {
			t.Run(tc.name+"/"+st.name, func(t *testing.T) {
				s := math.Exp(st.t)
				loss, dt, grads, err := tc.compute(st.g, s)
				if err != nil {
					t.Fatal(err)
				}
				want, floors := tc.ref(st.g, s)
				t.Logf("%d anchors at the floor", floors)
				if st.floors && floors == 0 {
					t.Fatalf("no anchor at the floor: the case does not test it")
				}
				if e := relErr1(loss, want); e > 1e-12 {
					t.Errorf("loss %v, reference %v (rel %g)", loss, want, e)
				}
				ref := func() float64 { l, _ := tc.ref(st.g, s); return l }
				for k, x := range tc.inputs {
					if e := relErr(grads[k], fdGrad(x, fdStep, ref)); logRel(t, "gradient", e) > fdTol {
						t.Errorf("gradient %d: relative error %g", k, e)
					}
				}
				fd := fdT(st.t, fdStep, func(s float64) float64 { l, _ := tc.ref(st.g, s); return l })
				if e := relErr1(dt, fd); logRel(t, "dL/dt", e) > fdTol {
					t.Errorf("dL/dt %v, finite difference %v (rel %g)", dt, fd, e)
				}
			})
		}
	}
}

// TestNegativesLimitIsPlain runs the reweighted code with a β so small
// that every weight e^{βx} is 1: it must agree with the plain objective.
// Zero Negatives select the plain code itself, so defaults are unchanged.
func TestNegativesLimitIsPlain(t *testing.T) {
	for _, tc := range negCases(rand.New(rand.NewPCG(32, 0))) {
		t.Run(tc.name, func(t *testing.T) {
			const s = 1 / 0.2
			pl, pdt, pg, err := tc.compute(Negatives{}, s)
			if err != nil {
				t.Fatal(err)
			}
			pg = clone2(pg)
			nl, ndt, ng, err := tc.compute(Negatives{Beta: 1e-300}, s)
			if err != nil {
				t.Fatal(err)
			}
			if e := relErr1(nl, pl); e > 1e-13 {
				t.Errorf("loss %v, plain %v (rel %g)", nl, pl, e)
			}
			if e := relErr1(ndt, pdt); e > 1e-12 {
				t.Errorf("dL/dt %v, plain %v (rel %g)", ndt, pdt, e)
			}
			for k := range pg {
				if e := relErr(ng[k], pg[k]); e > 1e-12 {
					t.Errorf("gradient %d: rel error %g from the plain one", k, e)
				}
			}
		})
	}
}

// TestHardNegativesChangeGradient: β > 0 and τ⁺ > 0 move every objective's
// gradient well away from the plain one.
func TestHardNegativesChangeGradient(t *testing.T) {
	for _, g := range []Negatives{{Beta: 1}, {TauPlus: 0.1}} {
		for _, tc := range negCases(rand.New(rand.NewPCG(33, 0))) {
			const s = 1 / 0.2
			_, _, pg, err := tc.compute(Negatives{}, s)
			if err != nil {
				t.Fatal(err)
			}
			pg = clone2(pg)
			_, _, ng, err := tc.compute(g, s)
			if err != nil {
				t.Fatal(err)
			}
			if e := relErr(ng[0], pg[0]); e < 1e-2 {
				t.Errorf("%s %+v: gradient within %g of the plain one", tc.name, g, e)
			}
		}
	}
}

func clone2(x [][]float64) [][]float64 {
	y := make([][]float64, len(x))
	for i := range x {
		y[i] = append([]float64(nil), x[i]...)
	}
	return y
}

func TestNegativesInvalid(t *testing.T) {
	for _, g := range []Negatives{{Beta: -1}, {Beta: math.NaN()}, {Beta: math.Inf(1)}, {TauPlus: 1}, {TauPlus: -0.1}, {TauPlus: math.NaN()}} {
		for _, tc := range negCases(rand.New(rand.NewPCG(34, 0))) {
			_, _, _, err := tc.compute(g, 2)
			if err == nil || !strings.Contains(err.Error(), "must") {
				t.Errorf("%s %+v: error %v, want a range error", tc.name, g, err)
			}
		}
	}
}

func TestEquivalenceNegatives(t *testing.T) {
	t.Run("float64", testEquivalenceNegatives[float64])
	t.Run("float32", testEquivalenceNegatives[float32])
}

func testEquivalenceNegatives[T gemm.Float](t *testing.T) {
	const B, d, K = 10, 6, 20
	rng := rand.New(rand.NewPCG(35, 0))
	u, v := conv[T](unitRows(rng, B, d)), conv[T](unitRows(rng, B, d))
	q1, k2 := conv[T](unitRows(rng, B, d)), conv[T](unitRows(rng, B, d))
	q2, k1 := conv[T](unitRows(rng, B, d)), conv[T](unitRows(rng, B, d))
	ids := []int32{3, 1, 3, 2, 7, 1, 4, 5, 6, 3}
	objectives := []struct {
		name string
		step func(g Negatives, counts []int) func(r int, coll Collective, lo, hi int) (float64, float64, [][]float64, error)
	}{
		{"clip", func(g Negatives, counts []int) func(int, Collective, int, int) (float64, float64, [][]float64, error) {
			return clipStep(u, v, nil, d, counts, g)
		}},
		{"clip masked", func(g Negatives, counts []int) func(int, Collective, int, int) (float64, float64, [][]float64, error) {
			return clipStep(u, v, ids, d, counts, g)
		}},
		{"ntxent", func(g Negatives, counts []int) func(int, Collective, int, int) (float64, float64, [][]float64, error) {
			return func(r int, coll Collective, lo, hi int) (float64, float64, [][]float64, error) {
				n := NTXent[T]{Chunk: 3, Negatives: g}
				in := NTXentInput[T]{Z1: rows(u, lo, hi, d), Z2: rows(v, lo, hi, d), D: d, Counts: counts, Scale: 1 / 0.3,
					DZ1: make([]T, (hi-lo)*d), DZ2: make([]T, (hi-lo)*d)}
				res, err := n.Compute(context.Background(), coll, in)
				return float64(res.Loss), float64(res.DT), [][]float64{to64(in.DZ1), to64(in.DZ2)}, err
			}
		}},
		{"moco symmetric", func(g Negatives, counts []int) func(int, Collective, int, int) (float64, float64, [][]float64, error) {
			return func(r int, coll Collective, lo, hi int) (float64, float64, [][]float64, error) {
				m := MoCo[T]{Queue: NewQueue[T](K, d, 99), Symmetric: true, Chunk: 3, Negatives: g}
				in := MoCoInput[T]{Q1: rows(q1, lo, hi, d), K2: rows(k2, lo, hi, d), Q2: rows(q2, lo, hi, d), K1: rows(k1, lo, hi, d),
					D: d, Counts: counts, Scale: 1 / 0.2, DQ1: make([]T, (hi-lo)*d), DQ2: make([]T, (hi-lo)*d)}
				res, err := m.Compute(context.Background(), coll, in)
				return float64(res.Loss), float64(res.DT), [][]float64{to64(in.DQ1), to64(in.DQ2)}, err
			}
		}},
	}
	for _, st := range negSettings {
		for _, o := range objectives {
			var want outcome
			for _, counts := range splits {
				got := distributed(t, counts, 2, d, o.step(st.g, counts))
				if len(counts) == 1 {
					want = got
					continue
				}
				t.Run(o.name+"/"+st.name, func(t *testing.T) {
					t.Logf("counts %v", counts)
					compare(t, got, want, tolerance[T]())
				})
			}
		}
	}
}

func clipStep[T gemm.Float](u, v []T, ids []int32, d int, counts []int, g Negatives) func(int, Collective, int, int) (float64, float64, [][]float64, error) {
	return func(r int, coll Collective, lo, hi int) (float64, float64, [][]float64, error) {
		c := CLIP[T]{Chunk: 3, MaskFalseNegatives: ids != nil, Negatives: g}
		in := CLIPInput[T]{U: rows(u, lo, hi, d), V: rows(v, lo, hi, d), D: d, Counts: counts, Scale: T(1 / 0.07),
			DU: make([]T, (hi-lo)*d), DV: make([]T, (hi-lo)*d)}
		if ids != nil {
			in.IDs = ids[lo:hi]
		}
		res, err := c.Compute(context.Background(), coll, in)
		return float64(res.Loss), float64(res.DT), [][]float64{to64(in.DU), to64(in.DV)}, err
	}
}

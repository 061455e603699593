package contrastive

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
)

// Finite-difference checks in float64 of every gradient against the
// straightforward full-matrix references, with chunks that do not divide
// the number of columns.

const (
	fdStep = 1e-6
	fdTol  = 1e-6
)

func TestCLIPGradientFiniteDifference(t *testing.T) {
	const B, d = 10, 4
	dupIDs := []int32{0, 1, 0, 2, 3, 1, 4, 5, 6, 0}
	for _, tc := range []struct {
		name  string
		chunk int
		ids   []int32
		t     float64
	}{
		{"plain chunk 3", 3, nil, math.Log(4)},
		{"plain chunk 1", 1, nil, math.Log(10)},
		{"plain chunk default", 0, nil, 0.5},
		{"masked chunk 3", 3, dupIDs, math.Log(4)},
		{"masked chunk 7", 7, dupIDs, math.Log(10)},
		{"masked distinct ids", 4, []int32{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(11, uint64(tc.chunk)))
			u, v := unitRows(rng, B, d), unitRows(rng, B, d)
			s := math.Exp(tc.t)
			c := CLIP[float64]{Chunk: tc.chunk, MaskFalseNegatives: tc.ids != nil}
			in := CLIPInput[float64]{U: u, V: v, D: d, Counts: []int{B}, Scale: s, IDs: tc.ids,
				DU: make([]float64, B*d), DV: make([]float64, B*d)}
			res, err := c.Compute(context.Background(), Single{}, in)
			if err != nil {
				t.Fatal(err)
			}
			ref := func() float64 { return clipRef(u, v, B, d, s, tc.ids) }
			if e := relErr1(res.Loss, ref()); e > 1e-13 {
				t.Errorf("loss %v, reference %v (rel %g)", res.Loss, ref(), e)
			}
			if e := relErr(in.DU, fdGrad(u, fdStep, ref)); logRel(t, "dL/dU", e) > fdTol {
				t.Errorf("dL/dU relative error %g", e)
			}
			if e := relErr(in.DV, fdGrad(v, fdStep, ref)); logRel(t, "dL/dV", e) > fdTol {
				t.Errorf("dL/dV relative error %g", e)
			}
			fd := fdT(tc.t, fdStep, func(s float64) float64 { return clipRef(u, v, B, d, s, tc.ids) })
			if e := relErr1(res.DT, fd); logRel(t, "dL/dt", e) > fdTol {
				t.Errorf("dL/dt %v, finite difference %v (rel %g)", res.DT, fd, e)
			}
		})
	}
}

func TestNTXentGradientFiniteDifference(t *testing.T) {
	const B, d = 5, 4 // 10 views
	for _, tc := range []struct {
		name  string
		chunk int
		t     float64
	}{{"chunk 3", 3, math.Log(4)}, {"chunk 1", 1, 1}, {"chunk 7", 7, math.Log(10)}, {"default", 0, 0.3}} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(12, uint64(tc.chunk)))
			z1, z2 := unitRows(rng, B, d), unitRows(rng, B, d)
			s := math.Exp(tc.t)
			n := NTXent[float64]{Chunk: tc.chunk}
			in := NTXentInput[float64]{Z1: z1, Z2: z2, D: d, Counts: []int{B}, Scale: s,
				DZ1: make([]float64, B*d), DZ2: make([]float64, B*d)}
			res, err := n.Compute(context.Background(), Single{}, in)
			if err != nil {
				t.Fatal(err)
			}
			ref := func() float64 { return ntxentRef(z1, z2, B, d, s) }
			if e := relErr1(res.Loss, ref()); e > 1e-13 {
				t.Errorf("loss %v, reference %v", res.Loss, ref())
			}
			if e := relErr(in.DZ1, fdGrad(z1, fdStep, ref)); logRel(t, "dL/dZ1", e) > fdTol {
				t.Errorf("dL/dZ1 relative error %g", e)
			}
			if e := relErr(in.DZ2, fdGrad(z2, fdStep, ref)); logRel(t, "dL/dZ2", e) > fdTol {
				t.Errorf("dL/dZ2 relative error %g", e)
			}
			fd := fdT(tc.t, fdStep, func(s float64) float64 { return ntxentRef(z1, z2, B, d, s) })
			if e := relErr1(res.DT, fd); logRel(t, "dL/dt", e) > fdTol {
				t.Errorf("dL/dt %v, finite difference %v (rel %g)", res.DT, fd, e)
			}
		})
	}
}

func TestMoCoGradientFiniteDifference(t *testing.T) {
	const B, d, K = 6, 4, 7
	for _, tc := range []struct {
		name      string
		symmetric bool
		chunk     int
		t         float64
	}{{"plain chunk 3", false, 3, math.Log(4)}, {"plain chunk default", false, 0, 1},
		{"symmetric chunk 3", true, 3, math.Log(10)}, {"symmetric chunk 1", true, 1, 0.5}} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(13, uint64(tc.chunk)))
			q1, k2, q2, k1 := unitRows(rng, B, d), unitRows(rng, B, d), unitRows(rng, B, d), unitRows(rng, B, d)
			queue := NewQueue[float64](K, d, 5)
			s := math.Exp(tc.t)
			m := MoCo[float64]{Queue: queue, Symmetric: tc.symmetric, Chunk: tc.chunk}
			in := MoCoInput[float64]{Q1: q1, K2: k2, D: d, Counts: []int{B}, Scale: s,
				DQ1: make([]float64, B*d)}
			if tc.symmetric {
				in.Q2, in.K1, in.DQ2 = q2, k1, make([]float64, B*d)
			}
			res, err := m.Compute(context.Background(), Single{}, in)
			if err != nil {
				t.Fatal(err)
			}
			refS := func(s float64) float64 {
				if !tc.symmetric {
					return ctrRef(q1, k2, queue.Data(), B, d, s)
				}
				return (ctrRef(q1, k2, queue.Data(), B, d, s) + ctrRef(q2, k1, queue.Data(), B, d, s)) / 2
			}
			ref := func() float64 { return refS(s) }
			if e := relErr1(res.Loss, ref()); e > 1e-13 {
				t.Errorf("loss %v, reference %v", res.Loss, ref())
			}
			if e := relErr(in.DQ1, fdGrad(q1, fdStep, ref)); logRel(t, "dL/dQ1", e) > fdTol {
				t.Errorf("dL/dQ1 relative error %g", e)
			}
			if tc.symmetric {
				if e := relErr(in.DQ2, fdGrad(q2, fdStep, ref)); logRel(t, "dL/dQ2", e) > fdTol {
					t.Errorf("dL/dQ2 relative error %g", e)
				}
			}
			fd := fdT(tc.t, fdStep, refS)
			if e := relErr1(res.DT, fd); logRel(t, "dL/dt", e) > fdTol {
				t.Errorf("dL/dt %v, finite difference %v (rel %g)", res.DT, fd, e)
			}
		})
	}
}

// logRel logs a relative error and returns it.
func logRel(t *testing.T, name string, e float64) float64 {
	t.Helper()
	t.Logf("%s: relative error %.2g", name, e)
	return e
}

package contrastive

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
)

// The float32 objectives (vectorised exponentials) against the float64
// objectives (math.Exp) on the same float32 embeddings: loss, dL/dt and
// gradients agree to float32 precision, for chunks that cut the diagonal,
// the partner views and the tails of the 8-lane vectors in every way, and
// for the largest logit scale (s = 100, where NT-Xent's excluded self
// logit S_aa lies far above the anchor's log-sum-exp).

// tol32 bounds the relative error of a float32 objective.
const tol32 = 2e-5

func compare32(t *testing.T, name string, l32, dt32 float32, g32 [][]float32, l64, dt64 float64, g64 [][]float64) {
	t.Helper()
	if e := relErr1(float64(l32), l64); e > tol32 {
		t.Errorf("%s: loss float32 %v, float64 %v (rel %g)", name, l32, l64, e)
	}
	if e := relErr1(float64(dt32), dt64); e > tol32 {
		t.Errorf("%s: dL/dt float32 %v, float64 %v (rel %g)", name, dt32, dt64, e)
	}
	for k := range g64 {
		if e := relErr(to64(g32[k]), g64[k]); e > tol32 {
			t.Errorf("%s: gradient %d: rel %g", name, k, e)
		}
	}
}

func TestFloat32FollowsFloat64(t *testing.T) {
	const B, d = 37, 16
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(71, 0))
	u64 := to64(conv[float32](unitRows(rng, B, d)))
	v64 := to64(conv[float32](unitRows(rng, B, d)))
	u32, v32 := conv[float32](u64), conv[float32](v64)
	ids := make([]int32, B)
	for i := range ids {
		ids[i] = int32(rng.IntN(5))
	}
	counts := []int{B}
	for _, s := range []float64{1, 1 / 0.07, 100} {
		for _, chunk := range []int{0, 5, 8, 16, 19, 36} {
			name := fmt.Sprintf("s %.3g chunk %d", s, chunk)
			for _, mask := range []bool{false, true} {
				c64 := CLIP[float64]{Chunk: chunk, MaskFalseNegatives: mask}
				c32 := CLIP[float32]{Chunk: chunk, MaskFalseNegatives: mask}
				du64, dv64 := make([]float64, B*d), make([]float64, B*d)
				du32, dv32 := make([]float32, B*d), make([]float32, B*d)
				r64, err := c64.Compute(ctx, Single{}, CLIPInput[float64]{U: u64, V: v64, D: d, Counts: counts, Scale: s, IDs: ids, DU: du64, DV: dv64})
				if err != nil {
					t.Fatal(err)
				}
				r32, err := c32.Compute(ctx, Single{}, CLIPInput[float32]{U: u32, V: v32, D: d, Counts: counts, Scale: float32(s), IDs: ids, DU: du32, DV: dv32})
				if err != nil {
					t.Fatal(err)
				}
				compare32(t, fmt.Sprintf("CLIP mask %v %s", mask, name), r32.Loss, r32.DT, [][]float32{du32, dv32}, r64.Loss, r64.DT, [][]float64{du64, dv64})
			}

			n64, n32 := NTXent[float64]{Chunk: chunk}, NTXent[float32]{Chunk: chunk}
			dz1, dz2 := make([]float64, B*d), make([]float64, B*d)
			ez1, ez2 := make([]float32, B*d), make([]float32, B*d)
			r64, err := n64.Compute(ctx, Single{}, NTXentInput[float64]{Z1: u64, Z2: v64, D: d, Counts: counts, Scale: s, DZ1: dz1, DZ2: dz2})
			if err != nil {
				t.Fatal(err)
			}
			r32, err := n32.Compute(ctx, Single{}, NTXentInput[float32]{Z1: u32, Z2: v32, D: d, Counts: counts, Scale: float32(s), DZ1: ez1, DZ2: ez2})
			if err != nil {
				t.Fatal(err)
			}
			compare32(t, "NTXent "+name, r32.Loss, r32.DT, [][]float32{ez1, ez2}, r64.Loss, r64.DT, [][]float64{dz1, dz2})

			for _, sym := range []bool{false, true} {
				q64 := NewQueue[float64](2*B, d, 5)
				q32 := NewQueue[float32](2*B, d, 5)
				copy(q32.Data(), conv[float32](q64.Data()))
				copy(q64.Data(), to64(q32.Data()))
				m64 := MoCo[float64]{Queue: q64, Symmetric: sym, Chunk: chunk}
				m32 := MoCo[float32]{Queue: q32, Symmetric: sym, Chunk: chunk}
				dq1, dq2 := make([]float64, B*d), make([]float64, B*d)
				eq1, eq2 := make([]float32, B*d), make([]float32, B*d)
				r64, err := m64.Compute(ctx, Single{}, MoCoInput[float64]{Q1: u64, K2: v64, Q2: v64, K1: u64, D: d, Counts: counts, Scale: s, DQ1: dq1, DQ2: dq2})
				if err != nil {
					t.Fatal(err)
				}
				r32, err := m32.Compute(ctx, Single{}, MoCoInput[float32]{Q1: u32, K2: v32, Q2: v32, K1: u32, D: d, Counts: counts, Scale: float32(s), DQ1: eq1, DQ2: eq2})
				if err != nil {
					t.Fatal(err)
				}
				g32, g64 := [][]float32{eq1}, [][]float64{dq1}
				if sym {
					g32, g64 = append(g32, eq2), append(g64, dq2)
				}
				compare32(t, fmt.Sprintf("MoCo sym %v %s", sym, name), r32.Loss, r32.DT, g32, r64.Loss, r64.DT, g64)
			}
		}
	}
}

package contrastive

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
)

// sigLIPRef is the SigLIP loss of the whole batch on one process, in
// float64: −1/B Σ_ij log σ(y_ij (s u_i·v_j + b)).
func sigLIPRef(u, v []float64, B, d int, s, b float64) float64 {
	var l float64
	for i := range B {
		for j := range B {
			y := -1.0
			if i == j {
				y = 1
			}
			l += softplus(-y*(s*dot(u[i*d:(i+1)*d], v[j*d:(j+1)*d])+b)) / float64(B)
		}
	}
	return l
}

// TestSigLIPDistributedEqualsReference: K = 1..4 ranks with uneven splits
// give the loss, the gradients of every embedding and dL/dt and dL/db of
// the reference, and the reference's gradients match finite differences.
func TestSigLIPDistributedEqualsReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 2))
	const B, d = 11, 5
	u, v := unitRows(rng, B, d), unitRows(rng, B, d)
	s, b := 10.0, -3.0
	want := sigLIPRef(u, v, B, d, s, b)
	wantDU := fdGrad(u, 1e-6, func() float64 { return sigLIPRef(u, v, B, d, s, b) })
	wantDV := fdGrad(v, 1e-6, func() float64 { return sigLIPRef(u, v, B, d, s, b) })
	wantDT := fdT(math.Log(s), 1e-6, func(s float64) float64 { return sigLIPRef(u, v, B, d, s, b) })
	wantDB := (sigLIPRef(u, v, B, d, s, b+1e-6) - sigLIPRef(u, v, B, d, s, b-1e-6)) / 2e-6
	for K := 1; K <= 4; K++ {
		counts := make([]int, K)
		for i := range B {
			counts[(i*K+i)%K]++ // uneven
		}
		off := offsets(counts)
		du, dv := make([]float64, B*d), make([]float64, B*d)
		var loss, dt, db [4]float64
		err := runRanks(K, func(rank int, coll Collective) error {
			lo, hi := off[rank], off[rank]+counts[rank]
			var g SigLIP[float64]
			r, err := g.Compute(context.Background(), coll, SigLIPInput[float64]{
				U: rows(u, lo, hi, d), V: rows(v, lo, hi, d), D: d, Counts: counts, Scale: s, Bias: b,
				DU: rows(du, lo, hi, d), DV: rows(dv, lo, hi, d),
			})
			loss[rank], dt[rank], db[rank] = r.Loss, r.DT, r.DB
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var l, gt, gb float64
		for r := range K {
			l, gt, gb = l+loss[r], gt+dt[r], gb+db[r]
		}
		if e := relErr1(l, want); e > 1e-10 {
			t.Errorf("K=%d: loss %v, reference %v", K, l, want)
		}
		if e := relErr(du, wantDU); e > 1e-6 {
			t.Errorf("K=%d: dL/dU off by %.2g relative", K, e)
		}
		if e := relErr(dv, wantDV); e > 1e-6 {
			t.Errorf("K=%d: dL/dV off by %.2g relative", K, e)
		}
		if e := relErr1(gt, wantDT); e > 1e-6 {
			t.Errorf("K=%d: dL/dt %v, finite differences %v", K, gt, wantDT)
		}
		if e := relErr1(gb, wantDB); e > 1e-6 {
			t.Errorf("K=%d: dL/db %v, finite differences %v", K, gb, wantDB)
		}
	}
}

// TestSigLIPMemoryFlatInRanks: at a fixed local batch the loss allocates
// the same on every rank whatever K (two blocks and one tile of b × b),
// unlike a gather of the whole batch.
func TestSigLIPMemoryFlatInRanks(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on synchronisation; counts are meaningful without it")
	}
	const b, d = 64, 32
	rng := rand.New(rand.NewPCG(1, 1))
	var first uint64
	for K := 1; K <= 4; K++ {
		counts := make([]int, K)
		for i := range counts {
			counts[i] = b
		}
		u, v := unitRows(rng, K*b, d), unitRows(rng, K*b, d)
		var peak [4]uint64
		err := runRanks(K, func(rank int, coll Collective) error {
			var g SigLIP[float32]
			du, dv := make([]float32, b*d), make([]float32, b*d)
			_, err := g.Compute(context.Background(), coll, SigLIPInput[float32]{
				U: conv[float32](rows(u, rank*b, (rank+1)*b, d)), V: conv[float32](rows(v, rank*b, (rank+1)*b, d)),
				D: d, Counts: counts, Scale: 10, Bias: -10, DU: du, DV: dv,
			})
			peak[rank] = uint64(cap(g.cur)+cap(g.next))*4 + uint64(cap(g.tile))*8
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if K == 1 {
			first = peak[0]
		}
		for r := range K {
			if peak[r] != first {
				t.Errorf("K=%d rank %d holds %d bytes of buffers, K=1 %d: want them equal", K, r, peak[r], first)
			}
		}
	}
}

package worker

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/infonce/infonce/contrastive"
)

// checkObjectiveGradient compares the ∂L/∂emb an objective writes with
// central differences of its loss, on random unit embeddings of b rows of
// every view, in float64 on one process.
func checkObjectiveGradient(t *testing.T, obj Objective[float64], b, d int) {
	t.Helper()
	r := rand.New(rand.NewPCG(5, 9))
	specs := obj.Views()
	in := &LossInput[float64]{D: d, Counts: []int{b}, Scale: 7, Views: make([]View[float64], len(specs))}
	for k, s := range specs {
		v := &in.Views[k]
		v.ViewSpec = s
		v.Emb, v.DEmb = make([]float64, b*d), make([]float64, b*d)
		for i := 0; i < b; i++ {
			var ss float64
			for j := range d {
				x := r.NormFloat64()
				v.Emb[i*d+j] = x
				ss += x * x
			}
			for j := range d {
				v.Emb[i*d+j] /= math.Sqrt(ss)
			}
		}
		v.Groups = make([]int32, b)
		for i := range v.Groups {
			v.Groups[i] = int32(i)
		}
	}
	ctx := context.Background()
	loss := func() float64 {
		res, err := obj.Loss(ctx, contrastive.Single{}, in)
		if err != nil {
			t.Fatal(err)
		}
		return res.Loss
	}
	loss()
	grads := make([][]float64, len(specs))
	for k := range specs {
		grads[k] = append([]float64(nil), in.Views[k].DEmb...)
	}
	const h = 1e-6
	for k := range specs {
		for _, idx := range []int{0, d + 1, b*d - 1} {
			x := &in.Views[k].Emb[idx]
			old := *x
			*x = old + h
			up := loss()
			*x = old - h
			down := loss()
			*x = old
			fd := (up - down) / (2 * h)
			if g := grads[k][idx]; math.Abs(g-fd) > 1e-6*math.Max(1, math.Abs(fd)) {
				t.Errorf("view %s, element %d: ∂L/∂emb %v, central differences %v", specs[k].Name, idx, g, fd)
			}
		}
	}
}

// TestObjectiveGradients: the gradients the composite objectives write
// (tri's weighted terms, CLIP with the time-contrastive term,
// DecisionNCE's normalised differences) match finite differences.
func TestObjectiveGradients(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
		mk   func(Config) (Objective[float64], error)
	}{
		{"tri", func(c *Config) { c.TriWeights = [3]float64{1, 0.5, 2} }, newTri[float64]},
		{"clip+tcn", func(c *Config) { c.TCNWeight = 0.7 }, newCLIP[float64]},
		{"tcn", func(*Config) {}, newTCN[float64]},
		{"decisionnce", func(*Config) {}, newDecisionNCE[float64]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Chunk = 3
			tc.cfg(&cfg)
			obj, err := tc.mk(cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkObjectiveGradient(t, obj, 5, 4)
		})
	}
}

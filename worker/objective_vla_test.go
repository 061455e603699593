package worker

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/contrastive"
	"github.com/infonce/infonce/model"
)

// TestVLAGradient: the vla loss's gradient with respect to the image,
// instruction and action embeddings and to every parameter of the fusion
// head matches central differences of the loss, in float64 on one
// process, for both activations and with ids masking positives.
func TestVLAGradient(t *testing.T) {
	for _, tc := range []struct {
		name, act string
		mask      bool
	}{{"relu", model.ActReLU, false}, {"gelu", model.ActGELU, false}, {"gelu-masked", model.ActGELU, true}} {
		t.Run(tc.name, func(t *testing.T) {
			const b, d = 5, 4
			mc := model.DefaultConfig()
			mc.ImageIn, mc.ImageHidden, mc.TextVocab, mc.TextHidden, mc.Dim = 6, []int{3}, 7, 3, d
			mc.ActionIn, mc.Activation = 5, tc.act
			mc.Fusion, mc.FusionHidden = model.FusionMLP, 6
			m, err := model.New[float64](mc, 11)
			if err != nil {
				t.Fatal(err)
			}
			cfg := DefaultConfig()
			cfg.Chunk, cfg.FusionHidden = 3, 6
			if tc.mask {
				cfg.MaskFalseNegatives, cfg.MaskField = true, MaskTask
			}
			o, err := newVLA[float64](cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := o.(initializer[float64]).Init(m); err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(5, 9))
			specs := o.Views()
			in := &LossInput[float64]{D: d, Counts: []int{b}, Scale: 7, Views: make([]View[float64], len(specs))}
			for k, s := range specs {
				v := &in.Views[k]
				v.ViewSpec = s
				v.Emb, v.DEmb = make([]float64, b*d), make([]float64, b*d)
				for i := range b {
					row := v.Emb[i*d : (i+1)*d]
					var ss float64
					for j := range row {
						row[j] = r.NormFloat64()
						ss += row[j] * row[j]
					}
					for j := range row {
						row[j] /= math.Sqrt(ss)
					}
				}
				// Rows 0 and 3 share an id: with masking they are
				// positives of each other.
				v.Groups = []int32{0, 1, 2, 0, 4}
			}
			ctx := context.Background()
			loss := func() float64 {
				res, err := o.Loss(ctx, contrastive.Single{}, in)
				if err != nil {
					t.Fatal(err)
				}
				return res.Loss
			}
			loss()
			grads := make([][]float64, len(specs))
			for k := range specs {
				grads[k] = slices.Clone(in.Views[k].DEmb)
			}
			m.P.ZeroGrad()
			o.(paramGrader[float64]).AddParamGrad(m.P.G)
			dHead := slices.Clone(m.P.G[m.FusionOff:])
			if len(dHead) != m.Fusion.NumParams() || len(dHead) != 6*(2*d+1)+d*(6+1) {
				t.Fatalf("fusion head of %d parameters, want %d", len(dHead), 6*(2*d+1)+d*(6+1))
			}
			const h = 1e-6
			central := func(x *float64) float64 {
				old := *x
				*x = old + h
				up := loss()
				*x = old - h
				down := loss()
				*x = old
				return (up - down) / (2 * h)
			}
			check := func(what string, i int, g, fd float64) {
				if math.Abs(g-fd) > 1e-6*math.Max(1, math.Abs(fd)) {
					t.Errorf("%s %d: gradient %v, central differences %v", what, i, g, fd)
				}
			}
			for k := range specs {
				for i := range in.Views[k].Emb {
					check("∂L/∂"+specs[k].Name, i, grads[k][i], central(&in.Views[k].Emb[i]))
				}
			}
			var nonzero int
			for i := range dHead {
				check("∂L/∂head", i, dHead[i], central(&m.P.W[m.FusionOff+i]))
				if dHead[i] != 0 {
					nonzero++
				}
			}
			// ReLU zeroes the rows of inactive hidden units, not most.
			if nonzero < len(dHead)/2 {
				t.Errorf("%d of %d head gradients are nonzero", nonzero, len(dHead))
			}
		})
	}
}

func vlaConfig(t *testing.T, spec string) Config {
	cfg := smallConfig(t, VLA)
	cfg.Data = spec
	cfg.DataOptions.ImageSize, cfg.Batch, cfg.ActionHorizon = 8, 10, 4
	cfg.ActionHidden, cfg.FusionHidden = []int{12}, 20
	cfg.LearnTemperature = true
	return cfg
}

// TestVLADistributedEqualsSingleProcess: K = 1, 2, 3 ranks, each fusing
// only its rows, reach the loss and the parameters (fusion head included)
// of one process within 1e-10 in float64, masked or not; float32 ranks
// whose reduction overlaps the backward pass in small buckets agree with
// one process within 1e-5.
func TestVLADistributedEqualsSingleProcess(t *testing.T) {
	spec := writeEpisodes(t, t.TempDir(), 8)
	for _, mask := range []string{"", MaskEpisode} {
		t.Run("mask="+mask, func(t *testing.T) {
			cfg := vlaConfig(t, spec)
			cfg.MaskFalseNegatives, cfg.MaskField = mask != "", mask
			data := loadData(t, cfg)
			rc := allreduce.Config{JobID: "vla"}
			one, want := stepOnRanksData(t, cfg, data, 1, 2, rc, func(*allreduce.Ring) Comm[float64] { return Single[float64]{} })
			m0 := one[0].Model
			if m0.Fusion == nil || m0.Action == nil {
				t.Fatal("no fusion head or no action tower")
			}
			// The step's gradient reaches the head: the reduced P.G of the
			// last step holds it in the head's segments.
			n := m0.Fusion.NumParams()
			if !slices.ContainsFunc(m0.P.G[m0.FusionOff:m0.FusionOff+n], func(g float64) bool { return g != 0 }) {
				t.Error("the fusion head's gradient is zero")
			}
			for K := 1; K <= 3; K++ {
				got, loss := stepOnRanksData(t, cfg, data, K, 2, rc, func(r *allreduce.Ring) Comm[float64] { return ring64{r} })
				for s := range want {
					if d := math.Abs(loss[s]-want[s]) / math.Abs(want[s]); d > 1e-10 {
						t.Errorf("K=%d step %d: loss %v, single process %v", K, s, loss[s], want[s])
					}
				}
				for k, tr := range got {
					if d := relDiff(tr.Model.P.G, m0.P.G); d > 1e-10 {
						t.Errorf("K=%d rank %d: gradient differs by %.2g relative", K, k, d)
					}
					if d := relDiff(tr.Model.P.W, m0.P.W); d > 1e-10 {
						t.Errorf("K=%d rank %d: parameters differ by %.2g relative", K, k, d)
					}
				}
			}
		})
	}
	t.Run("overlapped-float32", func(t *testing.T) {
		cfg := vlaConfig(t, spec)
		data := loadData(t, cfg)
		one, want := stepOnRanksData(t, cfg, data, 1, 2, allreduce.Config{JobID: "vla"}, func(*allreduce.Ring) Comm[float32] { return Single[float32]{} })
		for _, K := range []int{2, 3} {
			got, loss := stepOnRanksData(t, cfg, data, K, 2, allreduce.Config{JobID: "vla", BucketBytes: 1 << 10},
				func(r *allreduce.Ring) Comm[float32] { return r })
			for s := range want {
				if d := math.Abs(loss[s]-want[s]) / math.Abs(want[s]); d > 1e-5 {
					t.Errorf("K=%d step %d: loss %v, single process %v", K, s, loss[s], want[s])
				}
			}
			for k, tr := range got {
				if tr.overlappedSteps != 2 {
					t.Errorf("K=%d rank %d: %d of 2 steps overlapped the reduction", K, k, tr.overlappedSteps)
				}
				if d := relDiff(tr.Model.P.W, one[0].Model.P.W); d > 1e-5 {
					t.Errorf("K=%d rank %d: parameters differ by %.2g relative", K, k, d)
				}
			}
		}
	})
}

// TestVLATrainsAndEvaluates: on the toy robot the vla loss falls well
// below chance; the checkpoint records the fusion head, rebuilds it for
// evaluation and resume; and the evaluation, which queries the action
// chunks with the fused (image, instruction) embedding, retrieves them
// above chance.
func TestVLATrainsAndEvaluates(t *testing.T) {
	dir := t.TempDir()
	cfg := smallConfig(t, VLA)
	cfg.Data = writeEpisodes(t, filepath.Join(dir, "train"), 40)
	cfg.DataOptions.ValData = writeEpisodes(t, filepath.Join(dir, "val"), 12)
	cfg.DataOptions.ImageSize, cfg.Batch, cfg.Steps, cfg.ActionHorizon, cfg.LR = 8, 32, 80, 4, 3e-3
	cfg.FusionHidden = 24
	sum, err := RunLocalData(context.Background(), cfg, loadData(t, cfg), Options{Evaluate: true})
	if err != nil {
		t.Fatal(err)
	}
	// One InfoNCE term of ln 32 ≈ 3.47 at chance.
	if chance := math.Log(32); !(sum.FinalLoss < 0.8*chance) {
		t.Errorf("final loss %.3f, want below 0.8 × chance %.3f", sum.FinalLoss, chance)
	}
	ev := sum.Evaluation
	if ev.ActionRecallAt5 == nil || ev.ActionChanceAt5 == nil {
		t.Fatalf("no action retrieval in the evaluation: %+v", ev)
	}
	t.Logf("final loss %.3f; action R@1 %.3f R@5 %.3f (chance %.3f), median rank %.0f",
		sum.FinalLoss, *ev.ActionRecallAt1, *ev.ActionRecallAt5, *ev.ActionChanceAt5, *ev.ActionMedianRank)
	if *ev.ActionRecallAt5 < 2**ev.ActionChanceAt5 {
		t.Errorf("action R@5 %.3f, want at least twice chance %.3f", *ev.ActionRecallAt5, *ev.ActionChanceAt5)
	}

	tr, err := LoadForEval(context.Background(), CheckpointDir(cfg.Out))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	m := tr.Model
	if m.Fusion == nil || m.Cfg.Fusion != model.FusionMLP || m.Cfg.FusionHidden != 24 {
		t.Fatalf("the checkpoint's model has fusion %q of width %d, want %q of 24", m.Cfg.Fusion, m.Cfg.FusionHidden, model.FusionMLP)
	}
	// The evaluation of the loaded checkpoint gives the run's figures.
	again, err := tr.Evaluate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if again.ActionRecallAt5 == nil || *again.ActionRecallAt5 != *ev.ActionRecallAt5 {
		t.Errorf("evaluation of the checkpoint: action R@5 %v, the run's %v", again.ActionRecallAt5, *ev.ActionRecallAt5)
	}
	// The fused query is the head's, not the parameter-free sum.
	u, v := make([]float32, 2*cfg.Dim), make([]float32, 2*cfg.Dim)
	u[0], v[1], u[cfg.Dim+2], v[cfg.Dim+3] = 1, 1, 1, 1
	f, err := observations(context.Background(), m, u, v, cfg.Dim)
	if err != nil {
		t.Fatal(err)
	}
	if s := fused(u, v, cfg.Dim); slices.Equal(f, s) {
		t.Error("observations with a fusion head equal the parameter-free sum")
	}
}

package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/model"
)

// mnistData is the small MNIST of the equivalence tests as a Data.
func mnistData(t *testing.T) *Data {
	set := smallMNIST(t, 512, 10)
	return &Data{Name: set.Name, Set: set}
}

// checkMicroBatch runs two steps of cfg in one pass on refK ranks (one
// process when refK is 1), and with --micro-batch m on K ranks (over rings
// of configuration rc, or Single for one), and compares the losses, the
// second step's summed gradient and the parameters after both steps: tol
// relative.
func checkMicroBatch[T gemm.Float](t *testing.T, cfg Config, data *Data, refK, K, m int, tol float64, rc allreduce.Config, comm func(*allreduce.Ring) Comm[T]) {
	t.Helper()
	on := func(K int) func(*allreduce.Ring) Comm[T] {
		if K == 1 {
			return func(*allreduce.Ring) Comm[T] { return Single[T]{} }
		}
		return comm
	}
	cfg.MicroBatch = 0
	one, want := stepOnRanksData(t, cfg, data, refK, 2, rc, on(refK))
	cfg.MicroBatch = m
	got, loss := stepOnRanksData(t, cfg, data, K, 2, rc, on(K))
	for s := range want {
		if d := math.Abs(loss[s]-want[s]) / math.Abs(want[s]); d > tol {
			t.Errorf("K=%d m=%d step %d: loss %v, one pass %v (rel %.2g)", K, m, s, loss[s], want[s], d)
		}
	}
	for k, tr := range got {
		if d := relDiff(tr.Model.P.G, one[0].Model.P.G); d > tol {
			t.Errorf("K=%d m=%d rank %d: gradient differs from the one-pass step by %.2g relative", K, m, k, d)
		}
		ls := tr.Model.LogitScale
		if g, w := float64(tr.Model.P.G[ls]), float64(one[0].Model.P.G[ls]); math.Abs(g-w) > tol*math.Max(math.Abs(w), 1e-12) {
			t.Errorf("K=%d m=%d rank %d: dL/dt %v, one pass %v", K, m, k, g, w)
		}
		if d := relDiff(tr.Model.P.W, one[0].Model.P.W); d > tol {
			t.Errorf("K=%d m=%d rank %d: parameters after 2 steps differ from the one-pass run by %.2g relative", K, m, k, d)
		}
	}
}

// TestMicroBatchEqualsOnePass: encoding the rows in micro-batches, taking
// the loss and ∂L/∂emb on the whole batch and backpropagating each
// micro-batch again gives the loss, the gradient (logit scale included)
// and the parameters of the one-pass step, for one process and for K
// ranks with uneven shares and micro-batches that do not divide them:
// 1e-10 relative in float64, 1e-5 in float32. The float32 ranks reduce in
// small buckets during the backward pass, so that the gradient hook fires
// only once the last micro-batch has made a gradient final.
func TestMicroBatchEqualsOnePass(t *testing.T) {
	data := mnistData(t)
	for _, tc := range []struct {
		objective string
		symmetric bool
	}{{CLIP, false}, {SimCLR, false}, {MoCo, false}, {MoCo, true}, {SigLIP, false}} {
		name := tc.objective
		if tc.symmetric {
			name += "-symmetric"
		}
		cfg := smallConfig(t, tc.objective)
		cfg.Batch, cfg.Chunk, cfg.MoCoQueue, cfg.MoCoSymmetric = 10, 3, 20, tc.symmetric
		cfg.LearnTemperature = true
		cfg.MaskFalseNegatives = tc.objective == CLIP
		t.Run(name+"/float64", func(t *testing.T) {
			rc := allreduce.Config{JobID: "micro"}
			ring := func(r *allreduce.Ring) Comm[float64] { return ring64{r} }
			for _, km := range [][2]int{{1, 1}, {1, 3}, {1, 7}, {3, 2}, {4, 1}} {
				checkMicroBatch(t, cfg, data, 1, km[0], km[1], 1e-10, rc, ring)
			}
		})
		t.Run(name+"/float32", func(t *testing.T) {
			rc := allreduce.Config{JobID: "micro32", BucketBytes: 1 << 10}
			cfg := cfg
			cfg.LayerNorm = true
			ring := func(r *allreduce.Ring) Comm[float32] { return r }
			for _, km := range [][2]int{{1, 3}, {2, 2}, {3, 3}} {
				checkMicroBatch(t, cfg, data, 1, km[0], km[1], 1e-5, rc, ring)
			}
		})
	}
}

// TestMicroBatchEqualsOnePassWithActions is TestMicroBatchEqualsOnePass for
// the objectives of episodes: tri (three towers, the action tower's rows
// micro-batched too), tcn, CLIP with the time-contrastive term, and
// DecisionNCE (the gradient of a segment flows to both of its frames,
// which can fall in different micro-batches).
func TestMicroBatchEqualsOnePassWithActions(t *testing.T) {
	spec := writeEpisodes(t, t.TempDir(), 8)
	for _, tc := range []struct {
		objective string
		weight    float64
	}{{Tri, 0}, {TCN, 0}, {CLIP, 0.5}, {DecisionNCE, 0}} {
		t.Run(fmt.Sprintf("%s/%g", tc.objective, tc.weight), func(t *testing.T) {
			cfg := smallConfig(t, tc.objective)
			cfg.Data, cfg.TCNWeight, cfg.TCNWindow = spec, tc.weight, 3
			cfg.DataOptions.ImageSize, cfg.Batch, cfg.LearnTemperature = 8, 10, true
			cfg.ActionHorizon, cfg.ActionHidden, cfg.TriWeights = 4, []int{12}, [3]float64{1, 0.5, 2}
			data := loadData(t, cfg)
			rc := allreduce.Config{JobID: "micro-actions"}
			ring := func(r *allreduce.Ring) Comm[float64] { return ring64{r} }
			for _, km := range [][2]int{{1, 3}, {3, 2}} {
				// DecisionNCE's gradient on 3 ranks differs from one
				// process's by about 6e-9 relative with or without
				// micro-batches (a segment whose two frames are one, at
				// an episode's end, has Δ = 0, where e = Δ/√(‖Δ‖²+ε²)
				// magnifies rounding by 1/ε): its micro-batches are
				// compared with the one-pass step on as many ranks.
				refK := 1
				if tc.objective == DecisionNCE {
					refK = km[0]
				}
				checkMicroBatch(t, cfg, data, refK, km[0], km[1], 1e-10, rc, ring)
			}
		})
	}
}

// TestMicroBatchTowers: the cnn and vit image towers and the transformer
// text tower (micro-batches of token rows, their offsets rebased) give the
// one-pass gradient in micro-batches too.
func TestMicroBatchTowers(t *testing.T) {
	data := mnistData(t)
	for _, tc := range []struct{ objective, image, text string }{
		{CLIP, model.TowerViT, model.TowerTransformer},
		{CLIP, model.TowerCNN, model.TowerBagOfWords},
		{SimCLR, model.TowerCNN, ""},
	} {
		t.Run(tc.objective+"/"+tc.image+"/"+tc.text, func(t *testing.T) {
			cfg := tinyTowers(smallConfig(t, tc.objective), tc.image, tc.text)
			cfg.Batch, cfg.LearnTemperature = 6, true
			rc := allreduce.Config{JobID: "micro-towers"}
			ring := func(r *allreduce.Ring) Comm[float64] { return ring64{r} }
			for _, km := range [][2]int{{1, 4}, {3, 1}} {
				checkMicroBatch(t, cfg, data, 1, km[0], km[1], 1e-10, rc, ring)
			}
		})
	}
}

// rowCounter is a tower that records the most rows one Forward saw.
type rowCounter[T gemm.Float] struct {
	model.Tower[T]
	most *int
}

func (c rowCounter[T]) Forward(in model.Batch[T]) ([]T, error) {
	*c.most = max(*c.most, in.N)
	return c.Tower.Forward(in)
}

// TestMicroBatchBoundsForwardRows: with --micro-batch m no forward pass of
// a trained tower or of MoCo's key encoder sees more than m rows (the
// activations held at once are those of m rows), while the one-pass step
// encodes the whole local batch at once.
func TestMicroBatchBoundsForwardRows(t *testing.T) {
	data := mnistData(t)
	for _, objective := range []string{CLIP, MoCo} {
		for _, m := range []int{0, 4} {
			t.Run(fmt.Sprintf("%s/m=%d", objective, m), func(t *testing.T) {
				cfg := smallConfig(t, objective)
				cfg.Batch, cfg.MoCoQueue, cfg.MoCoSymmetric, cfg.MicroBatch = 10, 20, true, m
				tr, err := NewTrainerData[float32](cfg, data, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer tr.Close()
				var most int
				tr.Model.Image = rowCounter[float32]{tr.Model.Image, &most}
				if tr.Model.Text != nil {
					tr.Model.Text = rowCounter[float32]{tr.Model.Text, &most}
				}
				if o, ok := tr.Obj.(*mocoObjective[float32]); ok {
					o.key.Image = rowCounter[float32]{o.key.Image, &most}
				}
				if _, err := tr.Step(context.Background(), Single[float32]{}, 0); err != nil {
					t.Fatal(err)
				}
				want := 2 * cfg.Batch // two image views of every row
				if objective == CLIP {
					want = cfg.Batch
				}
				if m > 0 {
					want = m
				}
				if most != want {
					t.Errorf("the largest forward pass encoded %d rows, want %d", most, want)
				}
			})
		}
	}
}

// TestMicroBatchOfWholeBatchIsOnePass: a micro-batch that holds every
// local row is the one-pass step, bit for bit.
func TestMicroBatchOfWholeBatchIsOnePass(t *testing.T) {
	data := mnistData(t)
	cfg := smallConfig(t, CLIP)
	cfg.Batch = 10
	single := func(*allreduce.Ring) Comm[float32] { return Single[float32]{} }
	rc := allreduce.Config{JobID: "micro-whole"}
	one, _ := stepOnRanksData(t, cfg, data, 1, 2, rc, single)
	cfg.MicroBatch = cfg.Batch
	got, _ := stepOnRanksData(t, cfg, data, 1, 2, rc, single)
	if !slices.Equal(got[0].Model.P.W, one[0].Model.P.W) || !slices.Equal(got[0].Model.P.G, one[0].Model.P.G) {
		t.Error("--micro-batch B changed the step")
	}
}

// TestMicroRows: a micro-batch of token rows is the rows' ids with offsets
// from 0; one of dense rows is a view of theirs.
func TestMicroRows(t *testing.T) {
	ids := []int32{1, 2, 3, 4, 5, 6, 7}
	bags := model.Bags[float32](ids, []int32{0, 2, 2, 5}, 4) // {1,2} {} {3,4,5} {6,7}
	var off []int32
	for _, tc := range []struct {
		lo, hi  int
		ids     []int32
		offsets []int32
	}{
		{0, 2, []int32{1, 2}, []int32{0, 2}},
		{1, 3, []int32{3, 4, 5}, []int32{0, 0}},
		{2, 4, []int32{3, 4, 5, 6, 7}, []int32{0, 3}},
		{3, 4, []int32{6, 7}, []int32{0}},
	} {
		b := microRows(bags, tc.lo, tc.hi, &off)
		if b.N != tc.hi-tc.lo || !slices.Equal(b.IDs, tc.ids) || !slices.Equal(b.Offsets, tc.offsets) {
			t.Errorf("rows %d…%d: %d rows, ids %v, offsets %v; want %v, %v", tc.lo, tc.hi, b.N, b.IDs, b.Offsets, tc.ids, tc.offsets)
		}
	}
	x := []float32{0, 1, 2, 3, 4, 5}
	if b := microRows(model.Rows(x, 3), 1, 3, &off); b.N != 2 || !slices.Equal(b.X, x[2:]) {
		t.Errorf("dense rows 1…2: %d rows %v, want 2 rows %v", b.N, b.X, x[2:])
	}
}

// TestMicroBatchReachesWorkers: --micro-batch travels to the workers in the
// run specification, and the default's specification has no such field.
func TestMicroBatchReachesWorkers(t *testing.T) {
	cfg := DefaultConfig()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	if _, ok := fields["micro_batch"]; ok {
		t.Errorf("the default configuration encodes micro_batch: %s", b)
	}
	cfg.MicroBatch = 64
	b, err = EncodeRunSpec(RunSpec{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeRunSpec(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.MicroBatch != 64 {
		t.Errorf("a worker got micro-batch %d, want 64", got.MicroBatch)
	}
	cfg.MicroBatch = -1
	if err := cfg.Validate(); err == nil {
		t.Error("--micro-batch -1 was accepted")
	}
}

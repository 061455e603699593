package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/contrastive"
	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/model"
)

// alignObjective is an objective of the test's own: the alignment loss of
// Wang and Isola (2020), L = (1/B) Σ_i ‖u_i − v_i‖², between an image and
// its caption. It needs no negatives, so no collective: the shares of the
// ranks, each normalised by the global B, sum to the loss.
type alignObjective[T gemm.Float] struct{}

func (alignObjective[T]) Views() []ViewSpec {
	return []ViewSpec{{Name: "image", Tower: model.ModalityImage}, {Name: "text", Tower: model.ModalityText}}
}

// Loss is L_k = (1/B) Σ_{i ∈ R_k} ‖u_i − v_i‖², with ∂L/∂u_i = (2/B)(u_i − v_i)
// and ∂L/∂v_i = −∂L/∂u_i.
func (alignObjective[T]) Loss(ctx context.Context, _ contrastive.Collective, in *LossInput[T]) (contrastive.Result[T], error) {
	B := 0
	for _, c := range in.Counts {
		B += c
	}
	u, v := &in.Views[0], &in.Views[1]
	var loss float64
	for j := range u.Emb {
		diff := float64(u.Emb[j]) - float64(v.Emb[j])
		loss += diff * diff / float64(B)
		u.DEmb[j] = T(2 * diff / float64(B))
		v.DEmb[j] = -u.DEmb[j]
	}
	return contrastive.Result[T]{Loss: T(loss)}, ctx.Err()
}

const alignName = "align-test"

func init() {
	mustRegister(alignName,
		func(Config) (Objective[float32], error) { return alignObjective[float32]{}, nil },
		func(Config) (Objective[float64], error) { return alignObjective[float64]{}, nil })
}

// TestRegisteredObjectiveTrains registers an objective in this file and
// trains it through the real Step: the loss falls, and 3 ranks reach the
// parameters of 1 within float64 rounding.
func TestRegisteredObjectiveTrains(t *testing.T) {
	cfg := smallConfig(t, alignName)
	cfg.Batch, cfg.LearnTemperature = 12, false
	const steps = 6
	one, lossOne := stepOnRanks(t, cfg, 1, steps, func(*allreduce.Ring) Comm[float64] { return Single[float64]{} })
	if lossOne[steps-1] >= lossOne[0] {
		t.Errorf("alignment loss did not fall: %v", lossOne)
	}
	three, lossThree := stepOnRanks(t, cfg, 3, steps, func(r *allreduce.Ring) Comm[float64] { return ring64{r} })
	for s := range lossOne {
		if d := math.Abs(lossThree[s]-lossOne[s]) / lossOne[s]; d > 1e-10 {
			t.Errorf("step %d: 3 ranks loss %v, 1 rank %v (rel %.2g)", s, lossThree[s], lossOne[s], d)
		}
	}
	for k, tr := range three {
		if d := relDiff(tr.Model.P.W, one[0].Model.P.W); d > 1e-10 {
			t.Errorf("rank %d of 3: parameters differ from one rank's by %.2g relative", k, d)
		}
	}
	if !strings.Contains(fmt.Sprint(Objectives()), alignName) {
		t.Errorf("Objectives() = %v, want it to list %s", Objectives(), alignName)
	}
}

func TestObjectiveRegistry(t *testing.T) {
	mk32 := func(Config) (Objective[float32], error) { return alignObjective[float32]{}, nil }
	mk64 := func(Config) (Objective[float64], error) { return alignObjective[float64]{}, nil }
	if err := RegisterObjective(CLIP, mk32, mk64); err == nil {
		t.Error("registering clip twice succeeded")
	}
	if err := RegisterObjective("half-test", mk32, nil); err == nil {
		t.Error("registering without a float64 maker succeeded")
	}
	cfg := DefaultConfig()
	cfg.Objective = "no-such-objective"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "clip") {
		t.Errorf("Validate of an unknown objective: %v, want an error listing the objectives", err)
	}
}

func TestCheckViews(t *testing.T) {
	img, txt := model.ModalityImage, model.ModalityText
	for _, tc := range []struct {
		name  string
		views []ViewSpec
		want  string // "" for a valid list
	}{
		{"clip", []ViewSpec{{Name: "image", Tower: img}, {Name: "text", Tower: txt}}, ""},
		{"moco", []ViewSpec{{Name: "image", Tower: img, Augment: 1}, {Name: "image2", Tower: img, Augment: 2, InputOnly: true}}, ""},
		{"none", nil, "no views"},
		{"twice", []ViewSpec{{Name: "image", Tower: img}, {Name: "image", Tower: img}}, "twice"},
		{"unknown tower", []ViewSpec{{Name: "audio", Tower: "audio"}}, "unknown tower"},
		{"augmented text", []ViewSpec{{Name: "text", Tower: txt, Augment: 1}}, "text views"},
		{"encoded after input-only", []ViewSpec{{Name: "a", Tower: img, InputOnly: true}, {Name: "b", Tower: img}}, "before the input-only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkViews(tc.views)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("checkViews = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestRestoreRefusesOtherTowers: a checkpoint records the towers it was
// trained with, and a trainer whose towers differ (here, a vocabulary of
// another size, as from other captions) refuses it by name, even when the
// parameter count happens to agree; the same towers restore.
func TestRestoreRefusesOtherTowers(t *testing.T) {
	set := smallMNIST(t, 256, 10)
	cfg := smallConfig(t, CLIP)
	tr, err := NewTrainer[float32](cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	m, blobs, err := tr.Snapshot(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	blob := func(name string) ([]byte, error) {
		for _, b := range blobs {
			if b.Name == name {
				return b.Data, nil
			}
		}
		return nil, fmt.Errorf("no blob %s", name)
	}
	if _, err := tr.restore("same", m, blob); err != nil {
		t.Fatalf("restoring its own snapshot: %v", err)
	}
	var mc model.Config
	if err := json.Unmarshal([]byte(m.Extra[ExtraModel]), &mc); err != nil {
		t.Fatal(err)
	}
	mc.TextVocab, mc.TextHidden = mc.TextHidden, mc.TextVocab // same count, other towers
	b, _ := json.Marshal(mc)
	m.Extra[ExtraModel] = string(b)
	if _, err := tr.restore("other", m, blob); err == nil || !strings.Contains(err.Error(), "towers") {
		t.Fatalf("restoring a snapshot of other towers: %v, want a refusal naming the towers", err)
	}
}

// TestMaskByLabel: with --mask-false-negatives=label the rows of one class
// are each other's positives, which lowers the loss against masking by
// caption (fewer negatives), and the masked run is exact across ranks.
func TestMaskByLabel(t *testing.T) {
	cfg := smallConfig(t, CLIP)
	cfg.Batch, cfg.Chunk, cfg.MaskFalseNegatives = 12, 5, true
	_, byCaption := stepOnRanks(t, cfg, 1, 1, func(*allreduce.Ring) Comm[float64] { return Single[float64]{} })
	cfg.MaskField = MaskLabel
	one, byLabel := stepOnRanks(t, cfg, 1, 1, func(*allreduce.Ring) Comm[float64] { return Single[float64]{} })
	if !(byLabel[0] < byCaption[0]) {
		t.Errorf("loss masked by label %v, by caption %v: want lower", byLabel[0], byCaption[0])
	}
	three, loss := stepOnRanks(t, cfg, 3, 1, func(r *allreduce.Ring) Comm[float64] { return ring64{r} })
	if d := math.Abs(loss[0]-byLabel[0]) / byLabel[0]; d > 1e-10 {
		t.Errorf("3 ranks: loss %v, one %v", loss[0], byLabel[0])
	}
	if d := relDiff(three[1].Model.P.G, one[0].Model.P.G); d > 1e-10 {
		t.Errorf("3 ranks: gradient differs by %.2g", d)
	}
	// An idx set has no task field: the step says so.
	cfg.MaskField = MaskTask
	tr, err := NewTrainer[float64](cfg, smallMNIST(t, 64, 10))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if _, err := tr.Step(context.Background(), Single[float64]{}, 0); err == nil || !strings.Contains(err.Error(), "no task field") {
		t.Errorf("a task mask on an idx set: %v, want an error naming the field", err)
	}
}

package worker

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/wds"
	"github.com/infonce/infonce/rundir"
)

// writeEpisodes writes a WebDataset of episodes of a toy robot: in
// episode e the instruction names one of four moves, each frame shows a
// dot that moves that way, and the action (7 dimensions) is the move,
// with noise. It returns the wds: spec.
func writeEpisodes(t testing.TB, dir string, episodes int) string {
	t.Helper()
	return writeEpisodesState(t, dir, episodes, false)
}

// writeEpisodesState is writeEpisodes, with each step's state (the dot's
// x and y and the episode's parity, 3 dimensions) when withState.
func writeEpisodesState(t testing.TB, dir string, episodes int, withState bool) string {
	t.Helper()
	w, err := wds.NewWriter(dir, wds.WriterOptions{ShardSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	moves := []struct {
		text   string
		dx, dy int
	}{{"move the dot left", -1, 0}, {"move the dot right", 1, 0}, {"move the dot up", 0, -1}, {"move the dot down", 0, 1}}
	n := 0
	for e := range episodes {
		m := moves[e%4]
		T := 5 + e%4
		x, y := 6, 6
		for st := range T {
			pix := make([]byte, 12*12*3)
			for i := range pix {
				pix[i] = byte((e*31 + i*7) % 40)
			}
			for c := range 3 {
				pix[(y*12+x)*3+c] = 255
			}
			noise := float32((e*7+st*3)%5) * 0.01
			s := dataset.Sample{
				Index: n, Image: dataset.Picture{H: 12, W: 12, C: 3, Pix: pix}, Text: m.text, Label: -1, Task: e % 4,
				Action: []float32{float32(m.dx) + noise, float32(m.dy) - noise, 0, 0, 0, noise, 1}, ActionShape: []int{7},
				Episode: int64(e), Step: st, EpisodeLen: T,
			}
			if withState {
				s.State = []float32{float32(x) / 11, float32(y) / 11, float32(e % 2)}
			}
			members, err := wds.Members(&s)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Write(fmt.Sprintf("%06d", n), members); err != nil {
				t.Fatal(err)
			}
			n++
			x, y = min(max(x+m.dx, 0), 11), min(max(y+m.dy, 0), 11)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return "wds:" + w.Pattern()
}

// TestActionChunks: a chunk holds the next H steps of the sample's own
// episode, masked past its end, never the next episode's; actions are
// normalised to [−1, 1] by the 1st and 99th percentiles.
func TestActionChunks(t *testing.T) {
	spec := writeEpisodes(t, t.TempDir(), 6)
	src, err := dataset.Open(spec, dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tab, err := newActionTable(src, 4, false, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	if tab.A != 7 || tab.rowLen() != 4*8 {
		t.Fatalf("A %d, row %d", tab.A, tab.rowLen())
	}
	row := make([]float32, tab.rowLen())
	// Episode 0 has 5 steps (samples 0..4): the chunk at step 3 holds
	// steps 3 and 4, and nothing of episode 1 (sample 5).
	tab.fill(3, row)
	if mask := row[4*7:]; !slices.Equal(mask, []float32{1, 1, 0, 0}) {
		t.Fatalf("mask %v, want 1 1 0 0", mask)
	}
	for _, v := range row[2*7 : 4*7] {
		if v != 0 {
			t.Fatalf("padding %v, want zeros", row[2*7:4*7])
		}
	}
	for _, v := range row {
		if v < -1 || v > 1 || math.IsNaN(float64(v)) {
			t.Fatalf("value %v outside [−1, 1]", v)
		}
	}
	// Episode 0 moves left: its dx lies at the bottom of the range.
	if row[0] > -0.9 {
		t.Errorf("dx of a left move normalised to %v, want near −1", row[0])
	}
	tab.fill(0, row)
	if !slices.Equal(row[4*7:], []float32{1, 1, 1, 1}) {
		t.Errorf("a chunk inside the episode is masked: %v", row[4*7:])
	}
}

// TestTriDistributedEqualsSingleProcess: the tri-modal objective is exact
// across ranks, as each of its three InfoNCE terms is.
func TestTriDistributedEqualsSingleProcess(t *testing.T) {
	spec := writeEpisodes(t, t.TempDir(), 8)
	for _, mask := range []string{"", MaskTask, MaskEpisode} {
		t.Run("mask="+mask, func(t *testing.T) { triEquivalence(t, spec, mask, 0) })
	}
	t.Run("max-per-episode", func(t *testing.T) { triEquivalence(t, spec, "", 2) })
}

func triEquivalence(t *testing.T, spec, mask string, perEpisode int) {
	triEquivalenceWith(t, spec, mask, perEpisode, nil)
}

// triEquivalenceWith is triEquivalence on a configuration edit changes.
func triEquivalenceWith(t *testing.T, spec, mask string, perEpisode int, edit func(*Config)) {
	cfg := smallConfig(t, Tri)
	cfg.MaxPerEpisode = perEpisode
	cfg.Data = spec
	cfg.DataOptions.ImageSize, cfg.Batch, cfg.ActionHorizon = 8, 10, 4
	cfg.ActionHidden, cfg.TriWeights = []int{12}, [3]float64{1, 0.5, 2}
	cfg.LearnTemperature = true
	cfg.MaskFalseNegatives, cfg.MaskField = mask != "", mask
	if edit != nil {
		edit(&cfg)
	}
	data := loadData(t, cfg)
	rc := allreduce.Config{JobID: "tri"}
	one, want := stepOnRanksData(t, cfg, data, 1, 2, rc, func(*allreduce.Ring) Comm[float64] { return Single[float64]{} })
	got, loss := stepOnRanksData(t, cfg, data, 3, 2, rc, func(r *allreduce.Ring) Comm[float64] { return ring64{r} })
	for s := range want {
		if d := math.Abs(loss[s]-want[s]) / math.Abs(want[s]); d > 1e-10 {
			t.Errorf("step %d: loss %v, single process %v", s, loss[s], want[s])
		}
	}
	for k, tr := range got {
		if d := relDiff(tr.Model.P.W, one[0].Model.P.W); d > 1e-10 {
			t.Errorf("rank %d: parameters differ by %.2g relative", k, d)
		}
	}
	if one[0].Model.Action == nil {
		t.Fatal("no action tower")
	}
	if perEpisode > 0 {
		for step := range int64(2) {
			_, idx := one[0].Sampler.Batch(step, nil)
			count := map[int64]int{}
			for _, i := range idx {
				if count[one[0].episodes.episode[i]]++; count[one[0].episodes.episode[i]] > perEpisode {
					t.Fatalf("step %d: more than %d samples of episode %d", step, perEpisode, one[0].episodes.episode[i])
				}
			}
		}
	}
}

// TestTriTrains: on the toy robot, the tri-modal loss falls and a resumed
// run keeps the action statistics of its checkpoint.
func TestTriTrains(t *testing.T) {
	cfg := smallConfig(t, Tri)
	cfg.Data = writeEpisodes(t, t.TempDir(), 24)
	cfg.DataOptions.ImageSize, cfg.Batch, cfg.Steps, cfg.ActionHorizon = 8, 16, 30, 4
	sum, err := RunLocalData(context.Background(), cfg, loadData(t, cfg), Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Three terms of ln 16 ≈ 2.77 each at chance.
	if chance := 3 * math.Log(16); !(sum.FinalLoss < 0.9*chance) {
		t.Errorf("final loss %.3f, want below 0.9 × chance %.3f", sum.FinalLoss, chance)
	}
	tr, err := LoadForEval(context.Background(), CheckpointDir(cfg.Out))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.actions == nil || len(tr.actions.q01) != 7 {
		t.Fatalf("the checkpoint's trainer has no action statistics")
	}
}

// TestTriEvaluation: a tri run on the toy robot evaluated on held-out
// episodes retrieves action chunks from (image, instruction) above chance,
// and scores the recognition of the task family from the tasks.json beside
// the data, and writes vla_eval.json for the report.
func TestTriEvaluation(t *testing.T) {
	dir := t.TempDir()
	writeMoveFamilies(t, dir)
	cfg := smallConfig(t, Tri)
	cfg.Data = writeEpisodes(t, filepath.Join(dir, "train"), 40)
	cfg.DataOptions.ValData = writeEpisodes(t, filepath.Join(dir, "val"), 12)
	cfg.DataOptions.ImageSize, cfg.Batch, cfg.Steps, cfg.ActionHorizon, cfg.LR = 8, 32, 80, 4, 3e-3
	sum, err := RunLocalData(context.Background(), cfg, loadData(t, cfg), Options{Evaluate: true})
	if err != nil {
		t.Fatal(err)
	}
	ev := sum.Evaluation
	if ev.ActionRecallAt5 == nil || ev.ActionChanceAt5 == nil || ev.InstructionRecallAt1 == nil {
		t.Fatalf("no action retrieval in the evaluation: %+v", ev)
	}
	t.Logf("action R@1 %.3f R@5 %.3f (chance %.3f), median rank %.0f; instruction R@1 %.3f",
		*ev.ActionRecallAt1, *ev.ActionRecallAt5, *ev.ActionChanceAt5, *ev.ActionMedianRank, *ev.InstructionRecallAt1)
	if *ev.ActionRecallAt5 < 2**ev.ActionChanceAt5 {
		t.Errorf("action R@5 %.3f, want at least twice chance %.3f", *ev.ActionRecallAt5, *ev.ActionChanceAt5)
	}
	// Four instructions: chance R@1 is 1/4.
	if *ev.InstructionRecallAt1 < 0.5 {
		t.Errorf("instruction R@1 %.3f, want above 0.5 (chance 0.25)", *ev.InstructionRecallAt1)
	}
	// The toy robot's dx and dy follow from the instruction: a probe on
	// the fused embedding predicts them; in each episode the dot moves
	// steadily, so frames come closer to the last one.
	if ev.ActionR2 == nil || ev.TemporalKendallTau == nil || len(ev.ActionR2PerDim) != 7 {
		t.Fatalf("no action regression or temporal consistency: %+v", ev)
	}
	t.Logf("action R² %.3f %v, temporal τ %.3f", *ev.ActionR2, ev.ActionR2PerDim[0] != nil, *ev.TemporalKendallTau)
	if dx := ev.ActionR2PerDim[0]; dx == nil || *dx < 0.5 {
		t.Errorf("R² of dx %v, want above 0.5", dx)
	}
	if *ev.TemporalKendallTau <= 0 {
		t.Errorf("temporal Kendall τ %.3f, want positive", *ev.TemporalKendallTau)
	}
	if ev.TaskZeroShotTop1 == nil || ev.TaskProbeAccuracy == nil {
		t.Fatalf("no task recognition: %+v", ev)
	}
	t.Logf("task family: zero-shot %.3f, probe %.3f (chance 0.25)", *ev.TaskZeroShotTop1, *ev.TaskProbeAccuracy)
	for _, v := range []float64{*ev.TaskZeroShotTop1, *ev.TaskProbeAccuracy} {
		if !(v >= 0 && v <= 1) {
			t.Errorf("task accuracy %v outside [0, 1]", v)
		}
	}
	p, err := rundir.ReadVLAEval(cfg.Out)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.RecallAtK.K) == 0 || len(p.PCA.X) == 0 || len(p.PCA.Families) != 4 || slices.Contains(p.PCA.Family, -1) {
		t.Fatalf("vla_eval.json: %d k, %d points, families %v", len(p.RecallAtK.K), len(p.PCA.X), p.PCA.Families)
	}
	if k := slices.Index(p.RecallAtK.K, 5); k < 0 || math.Abs(p.RecallAtK.Action[k]-*ev.ActionRecallAt5) > 1e-12 {
		t.Errorf("the curve's R@5 differs from the summary's %v", *ev.ActionRecallAt5)
	}
}

// TestNearbyFrames: a nearby frame is another step of the same episode,
// at most the window away, and the same for the same (seed, epoch).
func TestNearbyFrames(t *testing.T) {
	src, err := dataset.Open(writeEpisodes(t, t.TempDir(), 6), dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tab, err := readEpisodes(src, 1, false, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for i := range src.Len() {
		for epoch := range 3 {
			j := tab.nearby(1, epoch, i, 3)
			if j != tab.nearby(1, epoch, i, 3) {
				t.Fatal("nearby is not a function of (seed, epoch, sample)")
			}
			if tab.episode[j] != tab.episode[i] || abs(tab.step[j]-tab.step[i]) > 3 {
				t.Fatalf("sample %d (episode %d step %d): nearby %d is episode %d step %d", i, tab.episode[i], tab.step[i], j, tab.episode[j], tab.step[j])
			}
			if j != i {
				moved++
			}
		}
	}
	if moved == 0 {
		t.Fatal("no nearby frame differs from its sample")
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// TestTCNDistributedEqualsSingleProcess: the time-contrastive loss, alone
// and added to CLIP's, is exact across ranks.
func TestTCNDistributedEqualsSingleProcess(t *testing.T) {
	spec := writeEpisodes(t, t.TempDir(), 8)
	for _, tc := range []struct {
		objective string
		weight    float64
	}{{TCN, 0}, {CLIP, 0.5}, {DecisionNCE, 0}} {
		t.Run(fmt.Sprintf("%s/%g", tc.objective, tc.weight), func(t *testing.T) {
			cfg := smallConfig(t, tc.objective)
			cfg.Data, cfg.TCNWeight, cfg.TCNWindow = spec, tc.weight, 3
			cfg.DataOptions.ImageSize, cfg.Batch, cfg.LearnTemperature = 8, 10, true
			data := loadData(t, cfg)
			rc := allreduce.Config{JobID: "tcn"}
			one, want := stepOnRanksData(t, cfg, data, 1, 2, rc, func(*allreduce.Ring) Comm[float64] { return Single[float64]{} })
			got, loss := stepOnRanksData(t, cfg, data, 3, 2, rc, func(r *allreduce.Ring) Comm[float64] { return ring64{r} })
			for s := range want {
				if d := math.Abs(loss[s]-want[s]) / math.Abs(want[s]); d > 1e-10 {
					t.Errorf("step %d: loss %v, single process %v", s, loss[s], want[s])
				}
			}
			for k, tr := range got {
				if d := relDiff(tr.Model.P.W, one[0].Model.P.W); d > 1e-10 {
					t.Errorf("rank %d: parameters differ by %.2g relative", k, d)
				}
			}
		})
	}
}

// TestEvaluationOnEpisodesWithoutActions: an image–text or image-only
// run on robot episodes, whose model has no action tower, still gets the
// scores that need none: temporal consistency and the task probe, and
// zero-shot task recognition when it has a text tower (and no action
// retrieval).
func TestEvaluationOnEpisodesWithoutActions(t *testing.T) {
	for _, obj := range []string{CLIP, SimCLR} {
		t.Run(obj, func(t *testing.T) {
			dir := t.TempDir()
			writeMoveFamilies(t, dir)
			cfg := smallConfig(t, obj)
			cfg.Data = writeEpisodes(t, filepath.Join(dir, "train"), 40)
			cfg.DataOptions.ValData = writeEpisodes(t, filepath.Join(dir, "val"), 12)
			cfg.DataOptions.ImageSize, cfg.Batch, cfg.Steps, cfg.LR = 8, 32, 40, 3e-3
			sum, err := RunLocalData(context.Background(), cfg, loadData(t, cfg), Options{Evaluate: true})
			if err != nil {
				t.Fatal(err)
			}
			ev := sum.Evaluation
			if ev.ActionRecallAt5 != nil {
				t.Errorf("action retrieval %v without an action tower", *ev.ActionRecallAt5)
			}
			if ev.TaskProbeAccuracy == nil || ev.TemporalKendallTau == nil {
				t.Fatalf("task probe or temporal consistency missing: %+v", ev)
			}
			if (ev.TaskZeroShotTop1 != nil) != (obj == CLIP) {
				t.Errorf("task zero-shot %v, want one exactly with a text tower", ev.TaskZeroShotTop1)
			}
			t.Logf("task probe %.3f (chance 0.25); temporal τ %.3f", *ev.TaskProbeAccuracy, *ev.TemporalKendallTau)
			if v := *ev.TaskProbeAccuracy; !(v >= 0 && v <= 1) {
				t.Errorf("task probe %v outside [0, 1]", v)
			}
			if tau := *ev.TemporalKendallTau; !(tau >= -1 && tau <= 1) {
				t.Errorf("Kendall τ %v outside [−1, 1]", tau)
			}
		})
	}
}

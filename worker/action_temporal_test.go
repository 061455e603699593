package worker

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/model"
)

// TestTriTemporalDistributedEqualsSingleProcess: --objective tri with the
// temporal action tower, with and without the state, is exact across
// ranks.
func TestTriTemporalDistributedEqualsSingleProcess(t *testing.T) {
	spec := writeEpisodesState(t, t.TempDir(), 8, true)
	for _, tc := range []struct {
		name  string
		mask  string
		state bool
	}{{"plain", "", false}, {"state", "", true}, {"state/mask=episode", MaskEpisode, true}} {
		t.Run(tc.name, func(t *testing.T) {
			triEquivalenceWith(t, spec, tc.mask, 0, func(c *Config) {
				c.ActionTower, c.ActionHidden = model.TowerTemporal, nil
				c.ActionWidth, c.ActionKernel, c.ActionState = 6, 3, tc.state
			})
		})
	}
}

// TestActionState: with --action-state a chunk's row ends with the
// sample's state, normalised to [−1, 1] by its quantiles, and the state
// reaches the action tower (mlp and temporal): a row that differs only in
// its state has another embedding.
func TestActionState(t *testing.T) {
	spec := writeEpisodesState(t, t.TempDir(), 6, true)
	for _, kind := range []string{model.TowerMLP, model.TowerTemporal} {
		t.Run(kind, func(t *testing.T) {
			cfg := smallConfig(t, Tri)
			cfg.Data, cfg.DataOptions.ImageSize, cfg.Batch, cfg.ActionHorizon = spec, 8, 8, 4
			cfg.ActionTower, cfg.ActionState = kind, true
			tr, err := NewTrainerData[float64](cfg, loadData(t, cfg), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			tab := tr.actions
			if tab.S != 3 || tab.rowLen() != 4*8+3 || tr.Model.Cfg.ActionIn != tab.rowLen() {
				t.Fatalf("S %d, row %d, model's ActionIn %d; want 3, 35, 35", tab.S, tab.rowLen(), tr.Model.Cfg.ActionIn)
			}
			if kind == model.TowerTemporal && tr.Model.Cfg.ActionTemporal != (model.TemporalConfig{Horizon: 4, State: 3, Width: 32, Kernel: 3}) {
				t.Errorf("temporal tower %+v", tr.Model.Cfg.ActionTemporal)
			}
			// Sample 7 is step 2 of episode 1, whose dot moves right from
			// (6, 6): it is at (8, 6), the episode odd.
			row := make([]float32, tab.rowLen())
			tab.fill(7, row)
			st := row[4*8:]
			for d, raw := range []float32{8.0 / 11, 6.0 / 11, 1} {
				if want := normalise(raw, tab.sq01[d], tab.sq99[d]); st[d] != want {
					t.Errorf("state %d: %v, want %v", d, st[d], want)
				}
			}
			x := make([]float64, 2*len(row))
			for j, v := range row {
				x[j], x[len(row)+j] = float64(v), float64(v)
			}
			x[len(x)-1] = -x[len(x)-1] // the parity, ±1 after normalisation
			w, err := tr.Model.Action.Forward(model.Rows(x, 2))
			if err != nil {
				t.Fatal(err)
			}
			d := cfg.Dim
			if relDiff(w[:d], w[d:]) < 1e-6 {
				t.Errorf("rows that differ in their state have the same embedding %v", w[:d])
			}
		})
	}
}

// TestActionStateOff: without --action-state the state of the data is
// ignored: a tri run on episodes with states is bit for bit the run on
// the same episodes without, its row has no state and its statistics
// keep their format.
func TestActionStateOff(t *testing.T) {
	dir := t.TempDir()
	with := writeEpisodesState(t, filepath.Join(dir, "with"), 6, true)
	without := writeEpisodesState(t, filepath.Join(dir, "without"), 6, false)
	run := func(spec string) (*Trainer[float64], []float64) {
		cfg := smallConfig(t, Tri)
		cfg.Data, cfg.DataOptions.ImageSize, cfg.Batch, cfg.ActionHorizon = spec, 8, 10, 4
		cfg.ActionTower = model.TowerTemporal
		tr, loss := stepOnRanksData(t, cfg, loadData(t, cfg), 1, 2, allreduce.Config{JobID: "off"}, func(*allreduce.Ring) Comm[float64] { return Single[float64]{} })
		return tr[0], loss
	}
	a, la := run(with)
	b, lb := run(without)
	if !slices.Equal(la, lb) || !slices.Equal(a.Model.P.W, b.Model.P.W) {
		t.Errorf("the states of the data changed a run without --action-state: losses %v and %v", la, lb)
	}
	if a.actions.S != 0 || a.actions.rowLen() != 4*8 || a.Model.Cfg.ActionTemporal.State != 0 {
		t.Errorf("S %d, row %d, tower %+v: want no state", a.actions.S, a.actions.rowLen(), a.Model.Cfg.ActionTemporal)
	}
	if js := a.actions.statsJSON(); strings.Contains(js, "state") || !strings.HasPrefix(js, `{"q01":[`) {
		t.Errorf("statistics %s", js)
	}
	// A source without states is refused with --action-state.
	cfg := smallConfig(t, Tri)
	cfg.Data, cfg.DataOptions.ImageSize, cfg.Batch, cfg.ActionState = without, 8, 10, true
	if _, err := NewTrainerData[float64](cfg, loadData(t, cfg), nil); err == nil || !strings.Contains(err.Error(), "--action-state") {
		t.Errorf("--action-state on data without states: %v", err)
	}
}

// TestTriTemporalCheckpoint: a run with the temporal tower and the state
// saves both in its checkpoint: the model evaluated from it is the
// temporal tower of the run's shape, with the state's quantiles of the
// training data, and its segments are those Describe lists; the
// held-out episodes are evaluated with the state too.
func TestTriTemporalCheckpoint(t *testing.T) {
	dir := t.TempDir()
	cfg := smallConfig(t, Tri)
	cfg.Data = writeEpisodesState(t, filepath.Join(dir, "train"), 12, true)
	cfg.DataOptions.ValData = writeEpisodesState(t, filepath.Join(dir, "val"), 4, true)
	cfg.DataOptions.ImageSize, cfg.Batch, cfg.Steps, cfg.ActionHorizon = 8, 16, 6, 4
	cfg.ActionTower, cfg.ActionWidth, cfg.ActionKernel, cfg.ActionState = model.TowerTemporal, 8, 5, true
	data := loadData(t, cfg)
	sum, err := RunLocalData(context.Background(), cfg, data, Options{Evaluate: true})
	if err != nil {
		t.Fatal(err)
	}
	if ev := sum.Evaluation; ev.ActionRecallAt5 == nil {
		t.Fatalf("no action retrieval in the evaluation of the held-out episodes: %+v", ev)
	}
	tr, err := LoadForEval(context.Background(), CheckpointDir(cfg.Out))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	mc := tr.Model.Cfg
	if mc.ActionTower != model.TowerTemporal || mc.ActionTemporal != (model.TemporalConfig{Horizon: 4, State: 3, Width: 8, Kernel: 5}) {
		t.Fatalf("evaluated model's action tower %s %+v", mc.ActionTower, mc.ActionTemporal)
	}
	if tr.Model.Action.Kind() != model.TowerTemporal {
		t.Fatalf("action tower of kind %s", tr.Model.Action.Kind())
	}
	fresh, err := newActionTable(mustOpen(t, cfg.Data), 4, true, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tr.actions.sq01, fresh.sq01) || !slices.Equal(tr.actions.sq99, fresh.sq99) || len(fresh.sq01) != 3 {
		t.Errorf("state quantiles %v %v, the data's %v %v", tr.actions.sq01, tr.actions.sq99, fresh.sq01, fresh.sq99)
	}
	towers, err := mc.Describe()
	if err != nil {
		t.Fatal(err)
	}
	act := towers[len(towers)-1]
	if act.Kind != model.TowerTemporal || len(act.Segments) != 6 || act.Segments[0].Name != "action.conv0.weight" || act.Segments[0].Len != 8*5*(7+3) {
		t.Errorf("described action tower %+v", act)
	}
	for _, s := range act.Segments {
		if got, ok := tr.Model.P.Lookup(s.Name); !ok || got != s {
			t.Errorf("segment %+v: the model has %+v", s, got)
		}
	}
}

// TestTriTemporalResumeIsBitExact: a tri run with the temporal tower and
// the state, saved after 3 steps and restored into a fresh trainer,
// continues as the uninterrupted run.
func TestTriTemporalResumeIsBitExact(t *testing.T) {
	cfg := smallConfig(t, Tri)
	cfg.Data = writeEpisodesState(t, t.TempDir(), 12, true)
	cfg.DataOptions.ImageSize, cfg.Batch, cfg.ActionHorizon = 8, 16, 4
	cfg.ActionTower, cfg.ActionWidth, cfg.ActionState = model.TowerTemporal, 8, true
	data := loadData(t, cfg)
	whole, err := NewTrainerData[float32](cfg, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer whole.Close()
	want := trainSteps(t, whole, 0, 6)
	first, err := NewTrainerData[float32](cfg, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	got := trainSteps(t, first, 0, 3)
	if _, err := first.Save(context.Background(), 3, 0); err != nil {
		t.Fatal(err)
	}
	c, err := (&checkpoint.Store{Root: CheckpointDir(cfg.Out)}).LoadLatest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.Manifest.Extra[extraActionStats], "state_q01") {
		t.Errorf("the checkpoint's statistics %s have no state quantiles", c.Manifest.Extra[extraActionStats])
	}
	second, err := NewTrainerData[float32](cfg, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.actions.sq01[0]++ // the checkpoint's quantiles must replace these
	if next, err := second.Restore(c); err != nil || next != 3 {
		t.Fatalf("restore: next %d, %v", next, err)
	}
	got = append(got, trainSteps(t, second, 3, 6)...)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("step %d: loss %v after resume, %v uninterrupted", i, got[i], want[i])
		}
	}
	if a, b := ParamSHA256(second.Model.P.W), ParamSHA256(whole.Model.P.W); a != b {
		t.Fatalf("parameters differ after resume: %s vs %s", a, b)
	}
}

func mustOpen(t *testing.T, spec string) dataset.Source {
	t.Helper()
	src, err := dataset.Open(spec, dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// TestActionTowerFlags: --action-width and --action-kernel shape only the
// temporal tower, the kernel is odd, and --action-state needs an objective
// with an action tower.
func TestActionTowerFlags(t *testing.T) {
	for _, tc := range []struct {
		name          string
		tower         string
		width, kernel int
		want          string
	}{
		{"temporal", model.TowerTemporal, 16, 5, ""},
		{"temporal defaults", model.TowerTemporal, 0, 0, ""},
		{"width of mlp", "", 16, 0, "--action-width and --action-kernel shape --action-tower temporal, not mlp"},
		{"even kernel", model.TowerTemporal, 0, 4, "an odd kernel"},
		{"negative width", model.TowerTemporal, -1, 0, "a positive width"},
	} {
		cfg := smallConfig(t, Tri)
		cfg.ActionTower, cfg.ActionWidth, cfg.ActionKernel = tc.tower, tc.width, tc.kernel
		err := cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate = %v, want %q", tc.name, err, tc.want)
		}
	}
	cfg := smallConfig(t, CLIP)
	cfg.Data, cfg.DataOptions.ImageSize, cfg.Batch, cfg.ActionState = writeEpisodesState(t, t.TempDir(), 4, true), 8, 8, true
	if _, err := NewTrainerData[float64](cfg, loadData(t, cfg), nil); err == nil || !strings.Contains(err.Error(), "has no action tower") {
		t.Errorf("--action-state with clip: %v", err)
	}
}

package rundir

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func line(m Metric) string {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestDecodeMetrics(t *testing.T) {
	l0, l1, l2 := line(Metric{Step: 0, Loss: 5}), line(Metric{Step: 1, Loss: 4}), line(Metric{Step: 2, Loss: 3})
	for _, tc := range []struct {
		name      string
		in        string
		steps     []int64
		truncated int
		err       string
	}{
		{name: "empty", in: ""},
		{name: "three lines", in: l0 + "\n" + l1 + "\n" + l2 + "\n", steps: []int64{0, 1, 2}},
		{name: "blank lines, CRLF, no final newline", in: "\r\n" + l0 + "\r\n\n  \n" + l1, steps: []int64{0, 1}},
		{name: "a torn last line is dropped", in: l0 + "\n" + l2[:len(l2)/2], steps: []int64{0}, truncated: 1},
		{name: "a bad line in the middle", in: l0 + "\n{\"step\": 1,\n" + l2 + "\n", err: "metrics line 2"},
		{name: "a bad complete last line", in: l0 + "\nnot json\n", err: "metrics line 2"},
		{name: "wrong type", in: `{"step": "one", "loss": 1}` + "\n", err: "metrics line 1"},
		{name: "no loss", in: `{"step":0}`, err: `no "step" or no "loss"`},
		{name: "null loss", in: `{"step":0,"loss":null}`, err: `no "step" or no "loss"`},
		{name: "no step", in: `{"loss":1}` + "\n", err: `no "step" or no "loss"`},
		{name: "negative step", in: `{"step":-1,"loss":1}`, err: "negative step"},
		{name: "a line too long", in: l0 + "\n" + strings.Repeat(" ", MaxMetricLine+1) + "\n", err: "metrics line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms, truncated, err := DecodeMetrics(strings.NewReader(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || ms != nil {
					t.Fatalf("lines %v, err %v; want no lines and an error containing %q", ms, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := steps(ms); !reflect.DeepEqual(got, tc.steps) || truncated != tc.truncated {
				t.Fatalf("steps %v truncated %d, want %v and %d", got, truncated, tc.steps, tc.truncated)
			}
		})
	}
}

func TestDecodeMetricsSkipping(t *testing.T) {
	l0, l1 := line(Metric{Step: 0, Loss: 5}), line(Metric{Step: 1, Loss: 4})
	for _, tc := range []struct {
		name  string
		in    string
		steps []int64
		bad   int
		err   bool
	}{
		{name: "clean", in: l0 + "\n" + l1 + "\n", steps: []int64{0, 1}},
		{name: "bad lines skipped", in: "junk\n" + l0 + "\n{\"step\":3}\n" + l1 + "\n{\"st", steps: []int64{0, 1}, bad: 3},
		{name: "a line too long", in: strings.Repeat("x", MaxMetricLine+1), err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms, bad, err := DecodeMetricsSkipping(strings.NewReader(tc.in))
			if tc.err {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := steps(ms); !reflect.DeepEqual(got, tc.steps) || bad != tc.bad {
				t.Fatalf("steps %v bad %d, want %v and %d", got, bad, tc.steps, tc.bad)
			}
		})
	}
}

func steps(ms []Metric) []int64 {
	var out []int64
	for _, m := range ms {
		out = append(out, m.Step)
	}
	return out
}

func TestHistoryAndLosses(t *testing.T) {
	// Steps 9..29 logged, then a resume from step 20 logged 19..39 again.
	ms := []Metric{{Step: 9, Loss: 1}, {Step: 19, Loss: 1}, {Step: 29, Loss: 1}, {Step: 19, Loss: 2}, {Step: 29, Loss: 2}, {Step: 39, Loss: 2}}
	h := History(ms)
	if got, want := steps(h), []int64{9, 19, 29, 39}; !reflect.DeepEqual(got, want) {
		t.Fatalf("history steps %v, want %v", got, want)
	}
	if h[1].Loss != 2 || h[2].Loss != 2 {
		t.Errorf("history %v: the lines written last must win", h)
	}
	if l := Losses(ms); !reflect.DeepEqual(l, map[int64]float64{9: 1, 19: 2, 29: 2, 39: 2}) {
		t.Errorf("losses %v", l)
	}
	if lw := LastWins(ms); len(lw) != 4 || lw[19].Loss != 2 {
		t.Errorf("last wins %v", lw)
	}
	// An evaluation's line after step 29 does not stand for the step.
	top1 := 0.5
	ms = append(ms, Metric{Step: 39, Loss: 2, Eval: &Evaluation{ZeroShotTop1: &top1}})
	if h := History(ms); len(h) != 4 || h[3].SamplesPerSecond != 0 || h[3].Eval != nil {
		t.Errorf("history %v: an evaluation line took a step's place", h)
	}
	if lw := LastWins(ms); lw[39].Eval != nil {
		t.Errorf("last wins took the evaluation line")
	}
	if ev := Evaluations(ms); len(ev) != 1 || *ev[0].Eval.ZeroShotTop1 != 0.5 {
		t.Errorf("evaluations %v", ev)
	}
}

// The field names of the run files are a format: readers outside this
// repository depend on them.
func TestRecordFieldNames(t *testing.T) {
	one := 1.0
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"breakdown", Breakdown{1, 2, 3, 4, 5, 6, 7, 8},
			`{"data_ms":1,"forward_ms":2,"gather_ms":3,"loss_ms":4,"backward_ms":5,"reduce_ms":6,"optimizer_ms":7,"total_ms":8}`},
		{"metric", Metric{Step: 3, Epoch: 1, Loss: 2.5, LogitScale: 14, LR: 0.001, GradNorm: 0.5, SamplesPerSecond: 900, Time: 1.5, Workers: 2, Generation: 4},
			`{"step":3,"epoch":1,"loss":2.5,"logit_scale":14,"lr":0.001,"grad_norm":0.5,"samples_per_second":900,"time":1.5,"workers":2,"generation":4,` +
				`"step_time":{"data_ms":0,"forward_ms":0,"gather_ms":0,"loss_ms":0,"backward_ms":0,"reduce_ms":0,"optimizer_ms":0,"total_ms":0}}`},
		{"summary", Summary[map[string]int]{Objective: "clip", Steps: 4, Evaluation: Evaluation{ZeroShotTop1: &one}, Config: map[string]int{"batch": 32}},
			`{"objective":"clip","data":"","workers":0,"generation":0,"steps":4,"samples":0,"final_loss":0,"final_logit_scale":0,` +
				`"samples_per_second":0,"train_seconds":0,"eval_seconds":0,"wall_seconds":0,"peak_rss_bytes":0,"param_sha256":"",` +
				`"step_time":{"data_ms":0,"forward_ms":0,"gather_ms":0,"loss_ms":0,"backward_ms":0,"reduce_ms":0,"optimizer_ms":0,"total_ms":0},` +
				`"zero_shot_top1":1,"zero_shot_top5":null,"recall_i2t_at_1":null,"recall_i2t_at_5":null,"recall_i2t_at_10":null,` +
				`"recall_t2i_at_1":null,"recall_t2i_at_5":null,"recall_t2i_at_10":null,"mean_rank_i2t":null,"median_rank_i2t":null,` +
				`"mean_rank_t2i":null,"median_rank_t2i":null,"class_recall_i2t_at_1":null,"class_recall_t2i_at_1":null,` +
				`"linear_probe_accuracy":0,"pixel_probe_accuracy":0,"alignment":null,"uniformity":0,"config":{"batch":32}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("got  %s\nwant %s", b, tc.want)
			}
		})
	}
}

func TestFilesRoundTrip(t *testing.T) {
	run := t.TempDir()
	if _, _, err := ReadMetrics(run); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("metrics of an empty run: %v, want fs.ErrNotExist", err)
	}
	if _, err := ReadSummary(run); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("summary of an empty run: %v, want fs.ErrNotExist", err)
	}
	for i, appendTo := range []bool{false, true, false} {
		w, err := CreateMetrics(run, appendTo)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(Metric{Step: int64(i), Loss: float64(i)}); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		ms, _, err := ReadMetrics(run)
		if err != nil {
			t.Fatal(err)
		}
		want := map[int]int{0: 1, 1: 2, 2: 1}[i] // a fresh file truncates, appending keeps
		if len(ms) != want {
			t.Errorf("after write %d (append %v): %d lines, want %d", i, appendTo, len(ms), want)
		}
	}
	type cfg struct {
		Batch int `json:"batch"`
	}
	if err := WriteSummary(run, &Summary[cfg]{Steps: 7, ParamSHA256: "ab", Config: cfg{Batch: 32}}); err != nil {
		t.Fatal(err)
	}
	raw, err := ReadSummary(run)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Steps != 7 || raw.ParamSHA256 != "ab" || string(raw.Config) != `{"batch":32}` && !strings.Contains(string(raw.Config), `"batch": 32`) {
		t.Errorf("summary %+v config %s", raw, raw.Config)
	}
	typed, err := ReadSummaryOf[cfg](run)
	if err != nil || typed.Config.Batch != 32 {
		t.Errorf("typed summary %+v, %v", typed, err)
	}
	b, _ := os.ReadFile(SummaryPath(run))
	if !bytes.HasSuffix(b, []byte("}\n")) || !bytes.Contains(b, []byte("\n  \"steps\": 7,\n")) {
		t.Errorf("summary.json is not indented JSON with a final newline:\n%s", b)
	}
	if left, _ := filepath.Glob(filepath.Join(run, ".tmp-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestCheckpoints(t *testing.T) {
	run := t.TempDir()
	if dirs, err := Checkpoints(run); err != nil || len(dirs) != 0 {
		t.Fatalf("a run without checkpoints: %v, %v", dirs, err)
	}
	if _, err := LatestCheckpoint(run); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("latest of none: %v, want ErrNoCheckpoint", err)
	}
	for _, name := range []string{"step-000000000010", "step-000000000200", "step-000000000030", ".tmp-step-000000000300", "step-x"} {
		if err := os.MkdirAll(filepath.Join(CheckpointDir(run), name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dirs, err := Checkpoints(run)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range dirs {
		names = append(names, filepath.Base(d))
	}
	if want := []string{"step-000000000200", "step-000000000030", "step-000000000010"}; !reflect.DeepEqual(names, want) {
		t.Errorf("checkpoints %v, want %v", names, want)
	}
	latest, err := LatestCheckpoint(run)
	if err != nil || latest != filepath.Join(run, "checkpoints", "step-000000000200") {
		t.Errorf("latest %q, %v", latest, err)
	}
}

func FuzzDecodeMetrics(f *testing.F) {
	f.Add([]byte(line(Metric{Step: 0, Loss: 5}) + "\n" + line(Metric{Step: 1, Loss: 4}) + "\n"))
	f.Add([]byte("\n\n{"))
	f.Add([]byte(`{"step":1e400,"loss":1}`))
	f.Add([]byte(`{"step":-3,"loss":1}` + "\n"))
	f.Add([]byte(`{"step":1,"loss":1,"step_time":{"data_ms":"x"}}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, truncated, err := DecodeMetrics(bytes.NewReader(b))
		lenient, bad, lerr := DecodeMetricsSkipping(bytes.NewReader(b))
		if (err == nil) != (lerr == nil) && lerr != nil {
			t.Fatalf("the skipping decoder failed (%v) where the strict one did not", lerr)
		}
		if err != nil {
			if ms != nil {
				t.Fatal("lines returned with an error")
			}
			return
		}
		if truncated > 1 {
			t.Fatalf("%d lines dropped; at most the last one may be", truncated)
		}
		if len(lenient) != len(ms) || bad != truncated {
			t.Fatalf("strict: %d lines, %d dropped; skipping: %d lines, %d bad", len(ms), truncated, len(lenient), bad)
		}
		for _, m := range ms {
			if m.Step < 0 {
				t.Fatalf("negative step %d accepted", m.Step)
			}
		}
		_ = History(ms)
	})
}

func FuzzDecodeSummary(f *testing.F) {
	b, _ := json.Marshal(Summary[map[string]int]{Objective: "clip", Steps: 3, Config: map[string]int{"batch": 1}})
	f.Add(b)
	f.Add([]byte(`{"steps":"x"}`))
	f.Add([]byte(`{"config":[1,2],"zero_shot_top1":null}`))
	f.Add([]byte("\xff{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSummary[json.RawMessage](b)
		if err != nil {
			if s != nil {
				t.Fatal("a summary returned with an error")
			}
			return
		}
		// A decoded summary encodes, and decodes again to the same record.
		again, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		s2, err := DecodeSummary[json.RawMessage](again)
		if err != nil {
			t.Fatalf("decode the re-encoded summary: %v\n%s", err, again)
		}
		if s.Steps != s2.Steps || s.Objective != s2.Objective || s.StepTime != s2.StepTime {
			t.Fatalf("round trip changed the summary: %+v vs %+v", s, s2)
		}
	})
}

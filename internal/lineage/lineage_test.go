package lineage

import (
	"strings"
	"testing"

	"github.com/infonce/infonce/rundir"
	"github.com/infonce/infonce/worker"
)

// A run of 4 samples in global batches of 2 (two steps per epoch) on two
// ranks, one row each; records are built by scenario.
func contribute(gen uint64, step int64, rank int, idx ...int) worker.SampleRecord {
	return worker.SampleRecord{Event: "contribute", Generation: gen, World: 2, Rank: rank, Step: step, Indices: idx}
}

func done(gen uint64, step int64) worker.SampleRecord {
	return worker.SampleRecord{Event: "done", Generation: gen, Step: step}
}

func TestCheck(t *testing.T) {
	run := Run{Steps: 4, Batch: 2, N: 4}
	// the steps of two epochs, each with both ranks' rows
	epochs := func(gen uint64, from int64) []worker.SampleRecord {
		var r []worker.SampleRecord
		idx := [][]int{{0, 1}, {2, 3}, {3, 1}, {0, 2}}
		for s := from; s < 4; s++ {
			r = append(r, contribute(gen, s, 0, idx[s][0]), contribute(gen, s, 1, idx[s][1]), done(gen, s))
		}
		return r
	}
	metrics := func(gens ...uint64) []rundir.Metric {
		var ms []rundir.Metric
		for s, g := range gens {
			ms = append(ms, rundir.Metric{Step: int64(s), Generation: g})
		}
		return ms
	}
	for _, c := range []struct {
		name    string
		samples []worker.SampleRecord
		metrics []rundir.Metric
		want    string // a problem it must report ("" : none)
	}{
		{"clean", epochs(1, 0), metrics(1, 1, 1, 1), ""},
		{"a step redone after a fault counts once",
			// step 2 contributed in generation 1, failed; ran again in 2
			append(append(epochs(1, 0)[:6], contribute(1, 2, 0, 3), contribute(1, 2, 1, 1)), epochs(2, 2)...),
			metrics(1, 1, 2, 2), ""},
		{"rank 0 died before the metrics line of its last step",
			epochs(1, 0), metrics(1, 1, 1), ""},
		{"a step never completed", epochs(1, 0)[:9], metrics(1, 1, 1), "step 3 never completed"},
		{"a rank missing", append(epochs(1, 0)[:6], contribute(1, 2, 0, 3), done(1, 2), contribute(1, 3, 0, 0), contribute(1, 3, 1, 2), done(1, 3)),
			metrics(1, 1, 1, 1), "with contributions from 1 ranks"},
		{"a sample twice in an epoch",
			append(epochs(1, 0)[:3], contribute(1, 1, 0, 0), contribute(1, 1, 1, 3), done(1, 1)),
			metrics(1, 1), "sample 0 seen 2 times"},
		{"split brain",
			append(epochs(2, 0), done(1, 3)), metrics(2, 2, 2, 2), "two generations made progress at once"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run
			if c.name == "a sample twice in an epoch" {
				r.Steps = 2
			}
			rep := Check(c.samples, c.metrics, r)
			got := strings.Join(rep.Problems, "; ")
			switch {
			case c.want == "" && got != "":
				t.Errorf("problems %q, want none", got)
			case c.want != "" && !strings.Contains(got, c.want):
				t.Errorf("problems %q, want one with %q", got, c.want)
			}
		})
	}
}

// With Rollbacks a later generation may start from an older state (a
// checkpoint) once the earlier one has stopped; overlap in time is still
// split brain.
func TestCheckRollbacks(t *testing.T) {
	at := func(r worker.SampleRecord, ms int64) worker.SampleRecord { r.UnixNano = ms * 1e6; return r }
	idx := [][]int{{0, 1}, {2, 3}, {3, 1}, {0, 2}}
	var recs []worker.SampleRecord
	// generation 1 completes steps 0..2 at 10, 20, 30 ms; generation 2
	// goes back to step 1 (a checkpoint) and completes 1..3 from 40 ms.
	for s := int64(0); s < 3; s++ {
		recs = append(recs, contribute(1, s, 0, idx[s][0]), contribute(1, s, 1, idx[s][1]), at(done(1, s), 10*(s+1)))
	}
	for s := int64(1); s < 4; s++ {
		recs = append(recs, contribute(2, s, 0, idx[s][0]), contribute(2, s, 1, idx[s][1]), at(done(2, s), 30+10*s))
	}
	ms := []rundir.Metric{{Step: 0, Generation: 1}, {Step: 1, Generation: 1}, {Step: 2, Generation: 1},
		{Step: 1, Generation: 2}, {Step: 2, Generation: 2}, {Step: 3, Generation: 2}}
	run := Run{Steps: 4, Batch: 2, N: 4}
	if rep := Check(recs, ms, run); len(rep.Problems) == 0 {
		t.Error("a rollback passes without Rollbacks")
	}
	run.Rollbacks = true
	if rep := Check(recs, ms, run); len(rep.Problems) != 0 {
		t.Errorf("a rollback after the end of the older generation: %q", rep.Problems)
	}
	// a worker of generation 1 woken late finishes the step it was in
	recs = append(recs, at(done(1, 2), 45))
	if rep := Check(recs, ms, run); len(rep.Problems) != 0 {
		t.Errorf("one late completion of the step in flight: %q", rep.Problems)
	}
	// generation 1 completes yet another step after generation 2's first
	recs = append(recs, at(done(1, 3), 55))
	if rep := Check(recs, ms, run); len(rep.Problems) == 0 || !strings.Contains(rep.Problems[0], "two generations made progress at once") {
		t.Errorf("overlapping generations: %q", rep.Problems)
	}
}

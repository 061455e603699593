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

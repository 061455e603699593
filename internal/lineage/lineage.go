package lineage

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/infonce/infonce/rundir"
	"github.com/infonce/infonce/worker"
)

// Run describes the run whose records are checked.
type Run struct {
	Steps int // steps 0..Steps-1 must have completed
	Batch int // the global batch B
	N     int // training samples: an epoch is N/B steps
	// Ref, when set, is the global batch of each step in an uninterrupted
	// run (the concatenated "contribute" indices in rank order).
	Ref map[int64][]int
	// Skipped steps were skipped whole (non-finite); they are not required.
	Skipped map[int64]bool
	// Rollbacks allows a later generation to start from an older state
	// than an earlier generation reached (the latest checkpoint, after
	// every worker holding a newer state was lost): two generations then
	// count as overlapping only when one completed a step after the other
	// had completed one (by the records' clock, one machine's), not by
	// their step numbers.
	Rollbacks bool
}

// Report is what Check found. Problems is empty when the run passes.
type Report struct {
	Problems    []string
	Generations int
	Lost        int // samples of an epoch never applied
	Repeated    int // samples applied more than once in an epoch
	Steps       int // steps checked
}

// Check checks the records (samples: every sample log's records; metrics:
// metrics.jsonl in file order) of run r.
func Check(samples []worker.SampleRecord, metrics []rundir.Metric, r Run) Report {
	var rep Report
	fail := func(format string, args ...any) { rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...)) }
	stepsPerEpoch := r.N / r.Batch
	final := rundir.LastWins(metrics)
	doneGen := CompletedGens(samples)
	type key struct {
		gen  uint64
		step int64
	}
	contrib := map[key]map[int][]int{}
	world := map[uint64]int{}
	doneMin, doneMax := map[uint64]int64{}, map[uint64]int64{}
	firstAt, lastAt := map[uint64]int64{}, map[uint64]int64{} // UnixNano
	firstStepAt, lastStepAt := map[uint64]int64{}, map[uint64]int64{}
	doneAt := map[uint64][]int64{}
	for _, s := range samples {
		switch s.Event {
		case "contribute":
			k := key{s.Generation, s.Step}
			if contrib[k] == nil {
				contrib[k] = map[int][]int{}
			}
			contrib[k][s.Rank] = s.Indices
			world[s.Generation] = s.World
		case "done", "skipped":
			if v, ok := firstAt[s.Generation]; !ok || s.UnixNano < v {
				firstAt[s.Generation], firstStepAt[s.Generation] = s.UnixNano, s.Step
			}
			doneAt[s.Generation] = append(doneAt[s.Generation], s.UnixNano)
			if v, ok := lastAt[s.Generation]; !ok || s.UnixNano > v {
				lastAt[s.Generation], lastStepAt[s.Generation] = s.UnixNano, s.Step
			}
			if v, ok := doneMin[s.Generation]; !ok || s.Step < v {
				doneMin[s.Generation] = s.Step
			}
			if v, ok := doneMax[s.Generation]; !ok || s.Step > v {
				doneMax[s.Generation] = s.Step
			}
		}
	}
	// No split brain: a generation stops before the steps of a later one.
	gens := make([]uint64, 0, len(doneMin))
	for g := range doneMin {
		gens = append(gens, g)
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i] < gens[j] })
	for i, g := range gens {
		for _, h := range gens[i+1:] {
			switch {
			case r.Rollbacks:
				// One late completion is the step that was in flight on a
				// worker stopped in the middle of it (its data had
				// arrived): it finishes it on waking, alone, and its state
				// is overwritten when it joins again. Two are progress.
				late := 0
				for _, at := range doneAt[g] {
					if at > firstAt[h] {
						late++
					}
				}
				if late > 1 {
					fail("generation %d completed %d steps (the last %d) up to %v after generation %d had completed its first (%d): two generations made progress at once",
						g, late, lastStepAt[g], time.Duration(lastAt[g]-firstAt[h]), h, firstStepAt[h])
				}
			case doneMax[g] > doneMin[h]:
				fail("generation %d completed step %d after generation %d had started at step %d: two generations made progress at once",
					g, doneMax[g], h, doneMin[h])
			}
		}
	}
	rep.Generations = len(gens)
	rep.Steps = r.Steps
	for e := 0; e*stepsPerEpoch < r.Steps; e++ {
		seen := map[int]int{}
		full := true
		for s := int64(e * stepsPerEpoch); s < int64((e+1)*stepsPerEpoch); s++ {
			if s >= int64(r.Steps) {
				full = false
				break
			}
			if r.Skipped[s] {
				full = false
				continue
			}
			m, ok := final[s]
			if !ok && doneGen[s] > 0 {
				// Rank 0 died between the step and its metrics line.
				m, ok = rundir.Metric{Step: s, Generation: doneGen[s]}, true
			}
			if !ok {
				fail("step %d never completed", s)
				rep.Lost += r.Batch
				continue
			}
			parts := contrib[key{m.Generation, s}]
			if len(parts) != world[m.Generation] {
				fail("step %d completed in generation %d (world %d) with contributions from %d ranks", s, m.Generation, world[m.Generation], len(parts))
			}
			var win []int
			for k := 0; k < world[m.Generation]; k++ {
				win = append(win, parts[k]...)
			}
			if len(win) != r.Batch {
				fail("step %d: %d samples, want the global batch %d", s, len(win), r.Batch)
			}
			if want := r.Ref[s]; want != nil && !equalInts(win, want) {
				fail("step %d: the global batch differs from the uninterrupted run's", s)
			}
			for _, i := range win {
				seen[i]++
			}
		}
		for i, n := range seen {
			if n > 1 {
				rep.Repeated += n - 1
				fail("epoch %d: sample %d seen %d times", e, i, n)
			}
		}
		if full && len(seen) != r.N {
			rep.Lost += r.N - len(seen)
			fail("epoch %d: %d distinct samples, want %d", e, len(seen), r.N)
		}
	}
	return rep
}

// CompletedGens maps each step to the newest generation in which some rank
// completed it.
func CompletedGens(samples []worker.SampleRecord) map[int64]uint64 {
	out := map[int64]uint64{}
	for _, s := range samples {
		if s.Event == "done" && s.Generation > out[s.Step] {
			out[s.Step] = s.Generation
		}
	}
	return out
}

// ReadSampleLogs reads every *.samples.jsonl file of dir; lines that do not
// decode (the last line of a killed process) are skipped.
func ReadSampleLogs(dir string) ([]worker.SampleRecord, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.samples.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("sample logs in %s: %w", dir, err)
	}
	var recs []worker.SampleRecord
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("sample log: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<26)
		for sc.Scan() {
			var r worker.SampleRecord
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.Event != "" {
				recs = append(recs, r)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("sample log %s: %w", p, err)
		}
	}
	return recs, nil
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

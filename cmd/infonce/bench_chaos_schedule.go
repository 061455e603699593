package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"time"
)

// faultKind is one kind of fault of `infonce bench chaos`.
type faultKind string

const (
	faultKill      faultKind = "kill"       // kill -9 of a worker of a random rank
	faultKillRank0 faultKind = "kill-rank0" // kill -9 of the worker of rank 0
	faultStop      faultKind = "sigstop"    // SIGSTOP of a worker, SIGCONT after the hold
	faultCoord     faultKind = "coordinator"
	faultPartition faultKind = "partition" // every packet of a worker's network namespace dropped for the hold
	faultDiskFull  faultKind = "disk-full" // the run directory's file system filled for the hold
)

// allFaultKinds in the order the schedule cycles through them.
var allFaultKinds = []faultKind{faultKill, faultKillRank0, faultStop, faultCoord, faultPartition, faultDiskFull}

// plannedFault is one entry of the schedule: the kind, the pause before it
// (counted from the previous fault's recovery) and a number that picks
// the victim among the candidates at injection time.
type plannedFault struct {
	Kind  faultKind
	Gap   time.Duration
	Pick  uint32
	Index int
}

// chaosSchedule is the seeded schedule of n faults over the kinds given:
// every kind at least once when n allows, the kinds in equal shares
// otherwise, in a random order; the gaps uniform in [gapMin, gapMax). The
// same seed gives the same schedule.
func chaosSchedule(seed uint64, n int, kinds []faultKind, gapMin, gapMax time.Duration) ([]plannedFault, error) {
	if len(kinds) == 0 {
		return nil, fmt.Errorf("chaos schedule: no fault kind enabled")
	}
	if n < 1 {
		return nil, fmt.Errorf("chaos schedule: %d faults: need at least one", n)
	}
	if gapMax < gapMin || gapMin < 0 {
		return nil, fmt.Errorf("chaos schedule: gaps [%v, %v) are not a range", gapMin, gapMax)
	}
	r := rand.New(rand.NewPCG(seed, 0x6368616f73)) // "chaos"
	plan := make([]plannedFault, n)
	for i := range plan {
		plan[i].Kind = kinds[i%len(kinds)]
	}
	r.Shuffle(n, func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	for i := range plan {
		plan[i].Index = i
		plan[i].Gap = gapMin
		if gapMax > gapMin {
			plan[i].Gap += time.Duration(r.Int64N(int64(gapMax - gapMin)))
		}
		plan[i].Pick = r.Uint32()
	}
	return plan, nil
}

// faultResult is what one injected fault did.
type faultResult struct {
	Index  int       `json:"index"`
	Kind   faultKind `json:"kind"`
	Target string    `json:"target"`
	At     time.Time `json:"at"`
	// Step is the last step completed before the fault, World the world
	// size of rank 0's last metrics line then.
	Step  int64 `json:"step"`
	World int   `json:"world"`
	// Recovery is the time from the fault to the next step completed by
	// any worker (-1: none came).
	Recovery time.Duration `json:"recovery_ns"`
	Note     string        `json:"note,omitempty"`
}

// recoveryStats are the median and the maximum of the recoveries of the
// faults given (those that recovered).
type recoveryStats struct {
	N      int           `json:"n"`
	Median time.Duration `json:"median_ns"`
	Max    time.Duration `json:"max_ns"`
}

func statsOf(rs []faultResult) recoveryStats {
	var ds []time.Duration
	for _, r := range rs {
		if r.Recovery >= 0 {
			ds = append(ds, r.Recovery)
		}
	}
	if len(ds) == 0 {
		return recoveryStats{}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	med := ds[len(ds)/2]
	if len(ds)%2 == 0 {
		med = (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
	}
	return recoveryStats{N: len(ds), Median: med, Max: slices.Max(ds)}
}

// byKind groups results by kind, in allFaultKinds order.
func byKind(rs []faultResult) map[faultKind][]faultResult {
	out := map[faultKind][]faultResult{}
	for _, r := range rs {
		out[r.Kind] = append(out[r.Kind], r)
	}
	return out
}

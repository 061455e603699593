package main

import (
	"testing"
	"time"
)

func TestChaosSchedule(t *testing.T) {
	kinds := []faultKind{faultKill, faultKillRank0, faultStop, faultCoord}
	a, err := chaosSchedule(7, 10, kinds, 100*time.Millisecond, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := chaosSchedule(7, 10, kinds, 100*time.Millisecond, 300*time.Millisecond)
	c, _ := chaosSchedule(8, 10, kinds, 100*time.Millisecond, 300*time.Millisecond)
	same := func(x, y []plannedFault) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Error("the same seed gave two schedules")
	}
	if same(a, c) {
		t.Error("seeds 7 and 8 gave the same schedule")
	}
	count := map[faultKind]int{}
	for i, f := range a {
		count[f.Kind]++
		if f.Index != i || f.Gap < 100*time.Millisecond || f.Gap >= 300*time.Millisecond {
			t.Errorf("fault %d: %+v", i, f)
		}
	}
	// 10 faults over 4 kinds: 3, 3, 2, 2.
	for i, k := range kinds {
		want := 2
		if i < 2 {
			want = 3
		}
		if count[k] != want {
			t.Errorf("%s: %d faults, want %d (%v)", k, count[k], want, count)
		}
	}
	for _, bad := range []struct {
		n        int
		kinds    []faultKind
		min, max time.Duration
	}{{0, kinds, 0, 0}, {3, nil, 0, 0}, {3, kinds, time.Second, 0}} {
		if _, err := chaosSchedule(1, bad.n, bad.kinds, bad.min, bad.max); err == nil {
			t.Errorf("chaosSchedule(%d, %v, %v, %v): want an error", bad.n, bad.kinds, bad.min, bad.max)
		}
	}
}

func TestRecoveryStats(t *testing.T) {
	ms := time.Millisecond
	rs := []faultResult{{Recovery: 30 * ms}, {Recovery: -1}, {Recovery: 10 * ms}, {Recovery: 20 * ms}, {Recovery: 50 * ms}}
	got := statsOf(rs)
	if got != (recoveryStats{N: 4, Median: 25 * ms, Max: 50 * ms}) {
		t.Errorf("statsOf = %+v", got)
	}
	if got := statsOf(nil); got != (recoveryStats{}) {
		t.Errorf("statsOf(nil) = %+v", got)
	}
}

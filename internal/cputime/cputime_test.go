package cputime

import (
	"runtime"
	"testing"
)

// TestProcessAdvances: CPU time spent shows in the reading.
func TestProcessAdvances(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("no getrusage here")
	}
	a, ok := process()
	if !ok {
		t.Fatal("no CPU time on a unix system")
	}
	x := 0.0
	for i := range 20_000_000 {
		x += float64(i)
	}
	b, _ := process()
	if b <= a || x == 0 {
		t.Errorf("CPU time went from %v to %v over a busy loop", a, b)
	}
}

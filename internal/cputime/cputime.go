package cputime

import (
	"testing"
	"time"
)

// Meter is the process's CPU time when a measurement started.
type Meter struct {
	start time.Duration
	ok    bool
}

// Start begins a measurement.
func Start() Meter {
	d, ok := process()
	return Meter{d, ok}
}

// Report adds the CPU time per operation since Start to b's results as
// "cpu-ns/op" (nothing where the CPU time cannot be read).
func (m Meter) Report(b *testing.B) {
	if d, ok := process(); m.ok && ok && b.N > 0 {
		b.ReportMetric(float64(d-m.start)/float64(b.N), "cpu-ns/op")
	}
}

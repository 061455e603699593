package membership

import "time"

// Reports decides when the worker tells the coordinator of the step
// boundaries it reaches and of its progress. The reporter wakes on a timer,
// when a progress report is handed over, and when the coordinator asks for
// a boundary (a joiner waits to be admitted at the next one). A boundary is
// reported once; after any report failed (the coordinator is down or
// restarting) nothing is sent for Retry, so that a coordinator coming back
// is not flooded.
type Reports struct {
	Retry time.Duration
	down  time.Time // when a report last failed
	sent  int64     // the boundary reported last
}

// NewReports returns the policy with nothing sent yet.
func NewReports(retry time.Duration) *Reports { return &Reports{Retry: retry, sent: -1} }

// Wake is the reporter waking at now with the boundary reached last (-1:
// none yet). quiet: send nothing now; boundary: report that boundary (then
// the progress, if the boundary report succeeded); otherwise only the
// progress waiting, if any.
func (r *Reports) Wake(now time.Time, reached int64) (quiet, boundary bool) {
	if !r.down.IsZero() && now.Sub(r.down) < r.Retry {
		return true, false
	}
	if reached > r.sent {
		r.sent = reached
		return false, true
	}
	return false, false
}

// Failed records that a report failed at now.
func (r *Reports) Failed(now time.Time) { r.down = now }

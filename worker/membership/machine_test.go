package membership

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infonce/infonce/coordinator"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// script drives a Machine through a line-per-event scenario. An event line
// may end in "=> A; B; ...", the actions the event must return in order
// ("=> -" for none); without "=>" the actions are not checked.
//
//	assign gN run|pause|stop|bogus rR/W [ckpt]
//	                                an assignment (ckpt: CheckpointBeforeStop)
//	waitended OUTCOME               the wait for an assignment ended
//	configure TOTAL BAD SUM CKPT [MAXSAVE]
//	                                the trainer was built (steps, max bad
//	                                steps, checksum and checkpoint intervals,
//	                                max failed saves in a row)
//	saveshared S N                  rank 0's save of step S: N failed in a row
//	configured                      the trainer existed already
//	started rR/W NEXT BAD           ring up, start state loaded
//	boundary NEWEST [stop]          the boundary before the next step
//	step AT S [nan] [stop]          step S completed at t0+AT
//	ended OUTCOME                   the generation ended
//	phase P                         the machine's phase
//	held GEN STEP STATE QUIT        Held() (STATE, QUIT: 0 or 1)
//	next S BAD                      Next()
func script(t *testing.T, lines []string) *Machine {
	t.Helper()
	m := New(DefaultConfig())
	for i, line := range lines {
		ev, want, check := strings.Cut(line, "=>")
		f := strings.Fields(ev)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("line %d %q: %s", i+1, line, fmt.Sprintf(format, args...))
		}
		num := func(s string) int64 {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				fail("bad number %q", s)
			}
			return v
		}
		rankWorld := func(s string) (int, int) {
			r, w, ok := strings.Cut(strings.TrimPrefix(s, "r"), "/")
			if !ok {
				fail("want rR/W, got %q", s)
			}
			return int(num(r)), int(num(w))
		}
		has := func(word string) bool {
			for _, x := range f[1:] {
				if x == word {
					return true
				}
			}
			return false
		}
		var acts []Action
		switch f[0] {
		case "assign":
			a := coordinator.Assignment{Generation: uint64(num(strings.TrimPrefix(f[1], "g"))), CheckpointBeforeStop: has("ckpt")}
			a.Rank, a.World = rankWorld(f[3])
			switch f[2] {
			case "run":
				a.Action = coordinator.ActionRun
			case "pause":
				a.Action = coordinator.ActionPause
			case "stop":
				a.Action = coordinator.ActionStop
			case "bogus":
				a.Action = coordinator.Action(99)
			default:
				fail("unknown action %q", f[2])
			}
			acts = m.Assigned(a)
		case "waitended":
			acts = m.WaitEnded(outcome(t, f[1]))
		case "configure":
			run := &Schedule{TotalSteps: num(f[1]), MaxBadSteps: int(num(f[2])), ChecksumEvery: num(f[3]), CheckpointEvery: num(f[4])}
			if len(f) > 5 {
				run.MaxSaveFailures = int(num(f[5]))
			}
			m.Configured(run)
		case "saveshared":
			acts = m.SaveShared(num(f[1]), int(num(f[2])))
		case "configured":
			m.Configured(nil)
		case "started":
			r, w := rankWorld(f[1])
			m.Started(r, w, num(f[2]), int(num(f[3])))
		case "boundary":
			acts = []Action{m.Boundary(uint64(num(f[1])), has("stop"))}
		case "step":
			d, err := time.ParseDuration(f[1])
			if err != nil {
				fail("%v", err)
			}
			acts = m.StepDone(t0.Add(d), num(f[2]), StepResult{NonFinite: has("nan"), Stop: has("stop")})
		case "ended":
			acts = m.GenerationEnded(outcome(t, f[1]))
		case "phase":
			if got := m.Phase().String(); got != f[1] {
				fail("phase %s, want %s", got, f[1])
			}
		case "held":
			h := m.Held()
			got := fmt.Sprintf("%d %d %d %d", h.Generation, h.Step, b2i(h.HasState), b2i(h.Quitting))
			if w := strings.Join(f[1:], " "); got != w {
				fail("held %s, want %s", got, w)
			}
		case "next":
			s, b := m.Next()
			if got := fmt.Sprintf("%d %d", s, b); got != strings.Join(f[1:], " ") {
				fail("next %s", got)
			}
		default:
			fail("unknown event %q", f[0])
		}
		if !check {
			continue
		}
		var got []string
		for _, a := range acts {
			got = append(got, a.String())
		}
		gotS := strings.Join(got, "; ")
		if gotS == "" {
			gotS = "-"
		}
		if w := strings.TrimSpace(want); gotS != w {
			fail("actions\n\t%s\nwant\n\t%s", gotS, w)
		}
	}
	return m
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func outcome(t *testing.T, s string) Outcome {
	t.Helper()
	for o := Continue; o <= Broken; o++ {
		if o.String() == s {
			return o
		}
	}
	t.Fatalf("unknown outcome %q", s)
	return 0
}

func TestScenarios(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
	}{
		{"a fresh run to its end on rank 0", []string{
			"phase waiting",
			"assign g1 run r0/2 => start g1",
			"phase starting",
			"held 0 0 0 0",
			"configure 6 3 3 2",
			"held 1 0 0 0",
			"started r0/2 0 0",
			"phase running",
			"held 1 0 1 0",
			"boundary 1 => run 0",
			// The first step is reported at once; the next ones at most
			// every second.
			"step 0s 0 => record 0; progress 1",
			"boundary 1 => run 1",
			"step 500ms 1 => record 1; save 2 retry; share-save 2 failed=0",
			"boundary 1 => run 2",
			"step 1100ms 2 => record 2; progress 3; checksum 3",
			"boundary 1 => run 3",
			"step 1500ms 3 => record 3; save 4 retry; share-save 4 failed=0",
			"boundary 1 => run 4",
			"step 1900ms 4 => record 4",
			"boundary 1 => run 5",
			// The last step: progress at once, a checksum, and no periodic
			// checkpoint (Finish writes the final one).
			"step 2000ms 5 => record 5; progress 6; checksum 6",
			"held 1 6 1 0",
			"boundary 1 => finish 6",
			"ended finished => exit finished",
			"phase done",
		}},
		{"the last step on another rank waits for the coordinator's stop", []string{
			"assign g1 run r1/2 => start g1",
			"configure 2 3 0 1",
			"started r1/2 0 0",
			"boundary 1 => run 0",
			// Rank 1 never saves, but learns how rank 0's save went.
			"step 0s 0 => record 0; progress 1; share-save 1 failed=0",
			"boundary 1 => run 1",
			"step 2s 1 => record 1; progress 2",
			"boundary 1 => end continue",
			"ended continue => -",
			"phase waiting",
			"assign g2 stop r1/2 ckpt => exit run-stopped",
			"phase done",
		}},
		{"membership change mid-step: the interrupted step runs again", []string{
			"assign g1 run r0/3 => start g1",
			"configure 100 3 0 0",
			"started r0/3 0 0",
			"boundary 1 => run 0",
			"step 0s 0 => record 0; progress 1",
			"boundary 1 => run 1",
			"step 100ms 1 => record 1",
			"boundary 1 => run 2",
			// A member died while step 2 ran: its collective failed.
			"ended failed => -",
			"phase waiting",
			"held 1 2 1 0",
			"assign g2 run r0/2 => start g2",
			"configured",
			"held 2 2 1 0",
			"started r0/2 2 0",
			"boundary 2 => run 2",
		}},
		{"dead neighbour: the survivor takes the broadcast state of the lowest rank", []string{
			"assign g4 run r2/3 => start g4",
			"configure 100 3 0 0",
			"started r2/3 10 0",
			"boundary 4 => run 10",
			"step 0s 10 => record 10; progress 11",
			"boundary 4 => run 11",
			"ended failed => -",
			"held 4 11 1 0",
			// Rank 0 died; this worker is rank 1 now and the broadcast
			// from the new rank 0 sets the step (one behind) and the bad
			// count.
			"assign g5 run r1/2 => start g5",
			"configured",
			"started r1/2 10 2",
			"next 10 2",
			"boundary 5 => run 10",
			"step 1s 10 nan => skip 10 bad=3; end aborted 10 bad=3",
			"ended aborted => report-abort 11; exit aborted",
			"held 5 11 1 1",
		}},
		{"coordinator forgot the worker: the re-join announces the state held", []string{
			"assign g3 run r0/1 => start g3",
			"configure 100 3 0 0",
			"held 3 0 0 0",
			"ended failed => -", // the ring never came up: no state yet
			"held 3 0 0 0",
			"assign g4 run r0/1 => start g4",
			"configured",
			"started r0/1 7 0",
			"boundary 4 => run 7",
			"step 0s 7 => record 7; progress 8",
			"held 4 8 1 0",
		}},
		{"stop request in a step: rank 0 saves, then leaves", []string{
			"assign g1 run r0/2 => start g1",
			"configure 100 3 0 10",
			"started r0/2 0 0",
			"boundary 1 stop => run 0 stop",
			"step 0s 0 stop => record 0; progress 1; save 1; end stopped",
			"ended stopped => exit stopped",
			"held 1 1 1 1",
		}},
		{"stop request that every rank agreed on, on rank 1: no save", []string{
			"assign g1 run r1/2 => start g1",
			"configure 100 3 0 1",
			"started r1/2 0 0",
			"boundary 1 => run 0",
			"step 0s 0 stop => record 0; progress 1; share-save 1 failed=0; end stopped",
		}},
		{"stop request at a periodic checkpoint: the state is saved twice, as before", []string{
			"assign g1 run r0/1 => start g1",
			"configure 100 3 0 1",
			"started r0/1 0 0",
			"boundary 1 stop => run 0 stop",
			"step 0s 0 stop => record 0; progress 1; save 1 retry; share-save 1 failed=0; save 1; end stopped",
		}},
		{"stop request while waiting after a broken ring", []string{
			"assign g1 run r0/2 => start g1",
			"configure 100 3 0 0",
			"started r0/2 5 0",
			"ended failed => -",
			"waitended stopped => save 5 best-effort; exit stopped",
			"held 1 5 1 1",
			"phase done",
		}},
		{"stop request while waiting, before any state: nothing to save", []string{
			"waitended stopped => exit stopped",
			"held 0 0 0 1",
		}},
		{"stop request while paused: the pause's rank 0 saves", []string{
			"assign g1 run r1/2 => start g1",
			"configure 100 3 0 0",
			"started r1/2 5 0",
			"boundary 1 => run 5",
			"ended failed => -",
			"assign g2 pause r0/1 => -",
			"phase paused",
			"waitended stopped => save 5 best-effort; exit stopped",
		}},
		{"the coordinator stops the run with a checkpoint", []string{
			"assign g1 run r0/1 => start g1",
			"configure 100 3 0 0",
			"started r0/1 3 0",
			"ended failed => -",
			"assign g2 stop r0/1 ckpt => save 3; exit run-stopped",
		}},
		{"a stop with a checkpoint on a worker without a trainer, or not rank 0", []string{
			"assign g1 stop r0/1 ckpt => exit run-stopped",
		}},
		{"a stop with a checkpoint on rank 1", []string{
			"assign g1 run r0/2 => start g1",
			"configure 100 3 0 0",
			"started r0/2 3 0",
			"ended failed => -",
			"assign g2 stop r1/2 ckpt => exit run-stopped",
		}},
		{"the run stopped while waiting, or the control plane broke", []string{
			"waitended run-stopped => exit run-stopped",
		}},
		{"generation numbers that skip: the newest is taken, older ones ignored", []string{
			"assign g2 run r0/2 => start g2",
			"configure 100 3 0 0",
			"started r0/2 0 0",
			"boundary 2 => run 0",
			"step 0s 0 => record 0; progress 1",
			// The coordinator restarted and numbered above the floor.
			"boundary 9 => end newer g9",
			"ended newer => -",
			"assign g9 run r0/2 => start g9",
			"assign g7 run r0/2 => -",
			"assign g9 pause r0/1 => -",
			"configured",
			"started r0/2 1 0",
			"boundary 9 => run 1",
		}},
		{"a joiner enters at a step boundary; the ring redoes no step", []string{
			// The member already training reports the boundary before
			// step 40; the coordinator answers with the joiner's
			// generation.
			"assign g1 run r0/1 => start g1",
			"configure 100 3 0 0",
			"started r0/1 39 0",
			"boundary 1 => run 39",
			"step 0s 39 => record 39; progress 40",
			"boundary 2 => end newer g2",
			"ended newer => -",
			"next 40 0",
			"assign g2 run r0/2 => start g2",
			"configured",
			"started r0/2 40 0",
			"boundary 2 => run 40",
		}},
		{"the joiner's side: its trainer starts from the broadcast state", []string{
			"assign g2 run r1/2 => start g2",
			"configure 100 3 0 0",
			"next 0 0",
			"started r1/2 40 1",
			"next 40 1",
			"held 2 40 1 0",
			"boundary 2 => run 40",
		}},
		{"non-finite steps: skipped and counted; a finite step resets the count", []string{
			"assign g1 run r0/1 => start g1",
			"configure 100 3 0 0",
			"started r0/1 0 0",
			"boundary 1 => run 0",
			"step 0s 0 nan => skip 0 bad=1",
			"boundary 1 => run 1",
			"step 0s 1 nan => skip 1 bad=2",
			"next 2 2",
			"boundary 1 => run 2",
			"step 0s 2 => record 2; progress 3",
			"next 3 0",
			"boundary 1 => run 3",
			"step 0s 3 nan stop => skip 3 bad=1; save 4; end stopped",
		}},
		{"too many non-finite steps in a row abort the run, rank 0 saving the last finite state", []string{
			"assign g1 run r0/2 => start g1",
			"configure 100 2 0 0",
			"started r0/2 4 0",
			"boundary 1 => run 4",
			"step 0s 4 nan => skip 4 bad=1",
			"boundary 1 => run 5",
			"step 0s 5 nan => skip 5 bad=2; save 6 best-effort; end aborted 5 bad=2",
			"ended aborted => report-abort 6; exit aborted",
			"held 1 6 1 1",
		}},
		{"a fatal error (a checkpoint that cannot be written) is reported", []string{
			"assign g1 run r0/1 => start g1",
			"configure 100 3 0 1",
			"started r0/1 0 0",
			"boundary 1 => run 0",
			"step 0s 0 => record 0; progress 1; save 1 retry; share-save 1 failed=0",
			"ended fatal => report-fatal 1; exit fatal",
			"held 1 1 1 1",
		}},
		{"periodic saves that fail: retried at the next interval, every rank stops together at the limit", []string{
			"assign g1 run r0/2 => start g1",
			"configure 100 3 0 2 3",
			"started r0/2 0 0",
			"boundary 1 => run 0",
			"step 0s 0 => record 0; progress 1",
			"boundary 1 => run 1",
			// Rank 0's save fails (disk full): it is not fatal, every rank
			// learns the count and the run goes on.
			"step 100ms 1 => record 1; save 2 retry; share-save 2 failed=0",
			"saveshared 2 1 => -",
			"boundary 1 => run 2",
			"step 200ms 2 => record 2",
			"boundary 1 => run 3",
			// The next interval says how many failed in a row so far.
			"step 300ms 3 => record 3; save 4 retry; share-save 4 failed=1",
			"saveshared 4 0 => -", // a save that succeeds resets the count
			"boundary 1 => run 4",
			"step 400ms 4 => record 4",
			"boundary 1 => run 5",
			"step 500ms 5 => record 5; save 6 retry; share-save 6 failed=0",
			"saveshared 6 1 => -",
			"boundary 1 => run 6",
			"step 600ms 6 => record 6",
			"boundary 1 => run 7",
			"step 700ms 7 => record 7; save 8 retry; share-save 8 failed=1",
			"saveshared 8 2 => -",
			"boundary 1 => run 8",
			"step 800ms 8 => record 8",
			"boundary 1 => run 9",
			"step 900ms 9 => record 9; save 10 retry; share-save 10 failed=2",
			"saveshared 10 3 => end aborted 10 save-failures=3",
			"ended aborted => report-abort 10; exit aborted",
		}},
		{"rank 1 stops at the same count as rank 0", []string{
			"assign g1 run r1/2 => start g1",
			"configure 100 3 0 1 2",
			"started r1/2 0 0",
			"boundary 1 => run 0",
			"step 0s 0 => record 0; progress 1; share-save 1 failed=0",
			"saveshared 1 1 => -",
			"boundary 1 => run 1",
			"step 100ms 1 => record 1; share-save 2 failed=1",
			"saveshared 2 2 => end aborted 2 save-failures=2",
		}},
		{"the end of training not acknowledged: finish again in the next generation", []string{
			"assign g1 run r0/1 => start g1",
			"configure 2 3 0 0",
			"started r0/1 1 0",
			"boundary 1 => run 1",
			"step 0s 1 => record 1; progress 2",
			"boundary 1 => finish 2",
			"ended continue => -",
			"phase waiting",
			"assign g2 run r0/1 => start g2",
			"configured",
			"started r0/1 2 0",
			"boundary 2 => finish 2",
			"ended finished => exit finished",
		}},
		{"an action the worker does not know", []string{
			"assign g1 bogus r0/1 => exit broken",
			"assign g2 run r0/1 => -",
		}},
		{"a pause keeps the state and the old rank's duty", []string{
			"assign g1 run r0/2 => start g1",
			"configure 10 3 0 0",
			"started r0/2 3 0",
			"ended failed => -",
			"assign g2 pause r0/1 => -",
			"held 1 3 1 0",
			"assign g3 run r0/2 => start g3",
			"configured",
			"started r0/2 3 0",
			"boundary 3 => run 3",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { script(t, tc.lines) })
	}
}

func TestJoinState(t *testing.T) {
	for _, tc := range []struct {
		held Held
		want *coordinator.HeldState
	}{
		{Held{}, nil},
		{Held{Generation: 3, Step: 7}, &coordinator.HeldState{Step: 0, Generation: 3, JobID: "j"}},
		{Held{Generation: 3, Step: 7, HasState: true}, &coordinator.HeldState{Step: 7, Generation: 3, JobID: "j"}},
	} {
		got := tc.held.JoinState("j")
		if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
			t.Errorf("%+v: got %+v, want %+v", tc.held, got, tc.want)
		}
	}
}

// TestReports: the coordinator is down for a while; the reporter goes quiet
// for Retry after a failure, reports each boundary once, and comes back.
func TestReports(t *testing.T) {
	type wake struct {
		at       time.Duration
		reached  int64
		fail     bool // the report sent at this wake fails
		quiet    bool
		boundary bool
	}
	r := NewReports(2 * time.Second)
	for i, w := range []wake{
		{at: 0, reached: -1}, // nothing reached yet: progress only
		{at: time.Second, reached: 0, boundary: true},
		{at: 2 * time.Second, reached: 0}, // reported already
		{at: 3 * time.Second, reached: 5, boundary: true, fail: true},
		{at: 4 * time.Second, reached: 6, quiet: true},
		{at: 4999 * time.Millisecond, reached: 7, quiet: true},
		{at: 5 * time.Second, reached: 7, boundary: true}, // back after Retry
		{at: 6 * time.Second, reached: 7, fail: true},     // the progress report fails
		{at: 7 * time.Second, reached: 8, quiet: true},
		{at: 8 * time.Second, reached: 8, boundary: true},
	} {
		now := t0.Add(w.at)
		quiet, boundary := r.Wake(now, w.reached)
		if quiet != w.quiet || boundary != w.boundary {
			t.Fatalf("wake %d at %v: quiet %v boundary %v, want %v %v", i, w.at, quiet, boundary, w.quiet, w.boundary)
		}
		if w.fail {
			r.Failed(now)
		}
	}
}

package coordinator

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

var fpA = Fingerprint{"model": "vit-t d=256", "objective": "infonce", "batch": "1024"}

// script drives a Rendezvous through a line-per-event scenario:
//
//	at 5s                       advance the clock and Tick
//	join [k=v,...]              join with fpA (or with the given fingerprint)
//	leave w1 | dead w1          remove a worker
//	boundary w1 G S             boundary before step S, generation G
//	progress w1 G S LOSS SPS    progress report
//	finish w1 G S               training finished
//	finished S | finished -     Finished reports step S, or nothing
//	commit w1 G S PATH          checkpoint committed
//	fatal w1 G S MSG            fatal error report
//	expect PHASE gN ACTION w1,w2 START STEP
//	                            START is fresh, ckpt:PATH or bcast:R; "-" as
//	                            ring means empty
//	rank w1 R W                 w1's assignment has rank R in world W
//	waiting w1                  w1 has no assignment yet
//	aborted w1 true|false       w1's assignment is the stop of an aborted run
//	gone w1                     w1 is unknown (removed)
//	err SUBSTRING               the previous event failed with SUBSTRING
//	reason SUBSTRING            the current generation's reason contains it
//	deadline D                  NextDeadline is t0+D ("none" for none)
//	watch w1 | unwatch w1       a Watch stream of w1 opened | closed
//	expired w2,w3               the last Tick declared these dead for a
//	                            missing Watch stream, in order ("-": none)
//	genreason N SUBSTRING       generation N's reason contains SUBSTRING
func script(t *testing.T, cfg RendezvousConfig, lines []string) *Rendezvous {
	t.Helper()
	r, err := NewRendezvous(cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	var lastErr error
	var expired []Unwatched
	joins := 0
	for i, line := range lines {
		f := strings.Fields(line)
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
		if f[0] != "err" && lastErr != nil {
			fail("unexpected error from previous event: %v", lastErr)
		}
		switch f[0] {
		case "at":
			d, err := time.ParseDuration(f[1])
			if err != nil {
				fail("%v", err)
			}
			now = t0.Add(d)
			expired = r.Tick(now)
		case "joinheld": // joinheld STEP GEN [JOB]: a worker holding state
			job := cfgJob(r)
			if len(f) > 3 {
				job = f[3]
			}
			joins++
			_, lastErr = r.Join(now, JoinRequest{Name: fmt.Sprintf("host%d", joins),
				DataAddr: fmt.Sprintf("10.0.0.%d:7000", joins), Fingerprint: fpA,
				Held: &HeldState{Step: num(f[1]), Generation: uint64(num(f[2])), JobID: job}})
		case "abort":
			lastErr = r.Fail(now, f[1], uint64(num(f[2])), num(f[3]), strings.Join(f[4:], " "), true, true)
		case "join":
			fp := fpA
			if len(f) > 1 && f[1] == "-" {
				fp = nil
			} else if len(f) > 1 {
				fp = Fingerprint{}
				for _, kv := range strings.Split(f[1], ",") {
					k, v, _ := strings.Cut(kv, "=")
					fp[k] = v
				}
			}
			joins++
			_, lastErr = r.Join(now, JoinRequest{Name: fmt.Sprintf("host%d", joins),
				DataAddr: fmt.Sprintf("10.0.0.%d:7000", joins), Fingerprint: fp})
		case "leave":
			lastErr = r.Leave(now, f[1], "bye")
		case "dead":
			lastErr = r.Dead(now, f[1], "gossip")
		case "boundary":
			lastErr = r.Boundary(now, f[1], uint64(num(f[2])), num(f[3]))
		case "progress":
			loss, _ := strconv.ParseFloat(f[4], 64)
			sps, _ := strconv.ParseFloat(f[5], 64)
			lastErr = r.Progress(now, f[1], uint64(num(f[2])), Progress{Step: num(f[3]), Loss: loss, SamplesPerSec: sps})
		case "finish":
			lastErr = r.Finish(now, f[1], uint64(num(f[2])), num(f[3]))
		case "finished":
			step, ok := r.Finished()
			got := "-"
			if ok {
				got = strconv.FormatInt(step, 10)
			}
			if got != f[1] {
				fail("finished %s, want %s", got, f[1])
			}
		case "commit":
			lastErr = r.CommitCheckpoint(now, f[1], uint64(num(f[2])), num(f[3]), f[4])
		case "ringfailed": // ringfailed ID GEN STEP: a non-fatal error report
			lastErr = r.Fail(now, f[1], uint64(num(f[2])), num(f[3]), "ring broken", false, false)
		case "fatal":
			lastErr = r.Fail(now, f[1], uint64(num(f[2])), num(f[3]), strings.Join(f[4:], " "), true, false)
		case "err":
			want := strings.Join(f[1:], " ")
			if lastErr == nil || !strings.Contains(lastErr.Error(), want) {
				fail("want error containing %q, got %v", want, lastErr)
			}
			lastErr = nil
		case "expect":
			g, _ := r.Current()
			if got := r.Phase().String(); got != f[1] {
				fail("phase %s, want %s", got, f[1])
			}
			if got := fmt.Sprintf("g%d", g.Number); got != f[2] {
				fail("generation %s, want %s", got, f[2])
			}
			if len(f) == 3 {
				break
			}
			if got := g.Action.String(); got != f[3] {
				fail("action %s, want %s", got, f[3])
			}
			ring := strings.Join(g.Members, ",")
			if ring == "" {
				ring = "-"
			}
			if ring != f[4] {
				fail("ring %s, want %s", ring, f[4])
			}
			var start string
			switch g.Start.Kind {
			case StartFresh:
				start = "fresh"
			case StartCheckpoint:
				start = "ckpt:" + g.Start.CheckpointPath
			case StartBroadcast:
				start = fmt.Sprintf("bcast:%d", g.Start.SourceRank)
			}
			if start != f[5] {
				fail("start %s, want %s", start, f[5])
			}
			if g.StartStep != num(f[6]) {
				fail("start step %d, want %s", g.StartStep, f[6])
			}
		case "rank":
			a, err := r.Assignment(f[1])
			if err != nil {
				fail("%v", err)
			}
			if a.Rank != int(num(f[2])) || a.World != int(num(f[3])) {
				fail("rank %d world %d", a.Rank, a.World)
			}
			if a.Rank >= 0 && a.PeerIDs[a.Rank] != f[1] {
				fail("peer ids %v do not hold %s at rank %d", a.PeerIDs, f[1], a.Rank)
			}
		case "aborted":
			a, err := r.Assignment(f[1])
			if err != nil {
				fail("%v", err)
			}
			if got := strconv.FormatBool(a.Aborted()); got != f[2] {
				fail("Aborted() = %s, want %s", got, f[2])
			}
		case "waiting":
			if _, err := r.Assignment(f[1]); !errors.Is(err, ErrNotAssigned) {
				fail("want ErrNotAssigned, got %v", err)
			}
		case "gone":
			if _, err := r.Assignment(f[1]); !errors.Is(err, ErrUnknownWorker) {
				fail("want ErrUnknownWorker, got %v", err)
			}
		case "reason":
			g, _ := r.Current()
			if want := strings.Join(f[1:], " "); !strings.Contains(g.Reason, want) {
				fail("reason %q does not contain %q", g.Reason, want)
			}
		case "watch":
			lastErr = r.WatchOpened(f[1])
		case "unwatch":
			r.WatchClosed(now, f[1])
		case "expired":
			var ids []string
			for _, u := range expired {
				ids = append(ids, u.ID)
			}
			got := strings.Join(ids, ",")
			if got == "" {
				got = "-"
			}
			if got != f[1] {
				fail("expired %s, want %s", got, f[1])
			}
		case "genreason":
			found := false
			for _, g := range r.Generations() {
				if g.Number == uint64(num(f[1])) {
					found = true
					if want := strings.Join(f[2:], " "); !strings.Contains(g.Reason, want) {
						fail("generation %d's reason %q does not contain %q", g.Number, g.Reason, want)
					}
				}
			}
			if !found {
				fail("no generation %s", f[1])
			}
		case "deadline":
			d, ok := r.NextDeadline()
			if f[1] == "none" {
				if ok {
					fail("deadline %v, want none", d.Sub(t0))
				}
				break
			}
			want, _ := time.ParseDuration(f[1])
			if !ok || !d.Equal(t0.Add(want)) {
				fail("deadline %v (%v), want %v", d.Sub(t0), ok, want)
			}
		default:
			fail("unknown event")
		}
	}
	if lastErr != nil {
		t.Fatalf("unexpected error from last event: %v", lastErr)
	}
	return r
}

// cfgJob is the job id of r's configuration.
func cfgJob(r *Rendezvous) string { return r.cfg.JobID }

func TestRendezvousScenarios(t *testing.T) {
	cfg := func(min, max int) RendezvousConfig {
		return RendezvousConfig{JobID: "job", MinWorkers: min, MaxWorkers: max,
			JoinTimeout: 10 * time.Second, JoinSettle: time.Second, RendezvousTimeout: 5 * time.Second}
	}
	tests := []struct {
		name  string
		cfg   RendezvousConfig
		lines []string
	}{
		{"a joiner whose start never completed is no broadcast source", cfg(1, 4), []string{
			"join", "join", "at 1s", "expect running g1 run w1,w2 fresh 0",
			"commit w1 1 5 /ck/5",
			"join", "boundary w1 1 10", "expect running g2 run w1,w2,w3 bcast:0 10",
			// w1 dies during g2's broadcast: w2 holds the state, w3 not yet
			"dead w1", "expect running g3 run w2,w3 bcast:0 10",
			// w2 dies too before g3 ran a step: w3 holds nothing
			"dead w2", "expect running g4 run w3 ckpt:/ck/5 5",
			// once a generation ran a step, its members hold the state
			"join", "boundary w3 4 7", "expect running g5 run w3,w4 bcast:0 7",
			"progress w4 5 8 2.5 100", "dead w3", "expect running g6 run w4 bcast:0 8",
		}},
		{"a ring that failed with every member present starts again", cfg(2, 4), []string{
			"join", "join", "join", "at 1s", "expect running g1 run w1,w2,w3 fresh 0",
			"progress w1 1 10 2.5 100",
			"ringfailed w2 1 10", "expect running g2 run w1,w2,w3 bcast:0 10",
			"reason the ring of generation 1 failed with every member present (reported by w2: ring broken)",
			// the other members' reports of the same ring come late
			"ringfailed w3 1 10", "expect running g2",
			// a member lost meanwhile is not brought back
			"dead w3", "expect running g3 run w1,w2 bcast:0 10",
			"ringfailed w1 2 10", "expect running g3",
		}},
		{"waits for MinWorkers then settles", cfg(2, 4), []string{
			"join", "expect waiting g0", "deadline 10s", "waiting w1",
			"at 1s", "join", "expect waiting g0", "deadline 2s",
			"at 1500ms", "join", "expect waiting g0",
			"at 2s", "expect running g1 run w1,w2,w3 fresh 0",
			"rank w1 0 3", "rank w2 1 3", "rank w3 2 3", "deadline none",
		}},
		{"MaxWorkers opens at once and the rest wait", cfg(2, 3), []string{
			"join", "join", "expect waiting g0", "join", "expect running g1 run w1,w2,w3 fresh 0",
			"join", "waiting w4", "expect running g1",
			"boundary w1 1 7", "expect running g1", // full: no admission
		}},
		{"settle restarts when a worker leaves below MinWorkers", cfg(2, 4), []string{
			"join", "join", "deadline 1s", "at 500ms", "leave w2", "deadline 10s",
			"at 700ms", "join", "deadline 1700ms", "at 1600ms", "expect waiting g0",
			"at 1700ms", "expect running g1 run w1,w3 fresh 0",
		}},
		{"JoinTimeout stops the run", cfg(3, 3), []string{
			"join", "join", "at 9s", "expect waiting g0", "at 10s",
			"expect stopped g1 stop - fresh 0", "reason only 2 of MinWorkers=3",
			"rank w1 -1 0", "join", "err the run is stopped",
		}},
		{"JoinTimeout zero waits forever", RendezvousConfig{MinWorkers: 2, MaxWorkers: 2}, []string{
			"join", "deadline none", "at 1000h", "expect waiting g0", "join", "expect running g1 run w1,w2 fresh 0",
		}},
		{"resume from the configured checkpoint", RendezvousConfig{MinWorkers: 1, MaxWorkers: 1,
			Resume: &Checkpoint{Step: 300, Path: "/ckpt/300"}}, []string{
			"join", "expect running g1 run w1 ckpt:/ckpt/300 300",
		}},
		{"fingerprint mismatch is refused with the fields", cfg(1, 2), []string{
			"join", "join model=vit-t,objective=ntxent,batch=512",
			"err batch: run has \"1024\", worker has \"512\"; model: run has \"vit-t d=256\", worker has \"vit-t\"; objective: run has \"infonce\", worker has \"ntxent\"",
			"join batch=1024", "err model: run has \"vit-t d=256\", worker has (unset); objective: run has \"infonce\", worker has (unset)",
		}},
		{"empty data address is refused", cfg(1, 1), []string{}},
		{"a worker without a fingerprint takes the run's configuration", cfg(2, 2), []string{
			"join", "join -", "at 1s", "expect running g1 run w1,w2 fresh 0",
		}},
		{"a restarted coordinator broadcasts the most advanced held state above every generation", RendezvousConfig{JobID: "job",
			MinWorkers: 3, MaxWorkers: 3, Resume: &Checkpoint{Step: 30, Path: "/ckpt/30"}}, []string{
			"joinheld 40 7", "joinheld 42 7", "expect waiting g0", "joinheld 41 6",
			"expect running g8 run w1,w2,w3 bcast:1 42", "rank w2 1 3",
			"dead w1", "expect paused g9 pause w2,w3 bcast:0 42",
		}},
		{"a checkpoint newer than every held state wins", RendezvousConfig{JobID: "job", MinWorkers: 1, MaxWorkers: 2,
			Resume: &Checkpoint{Step: 50, Path: "/ckpt/50"}}, []string{
			"joinheld 40 3", "expect running g4 run w1 ckpt:/ckpt/50 50",
		}},
		{"a worker re-joining with held state enters at a boundary like any joiner", cfg(2, 3), []string{
			"join", "join", "at 1s", "expect running g1 run w1,w2 fresh 0",
			"joinheld 12 1", "waiting w3", "boundary w1 1 20", "expect running g2 run w1,w2,w3 bcast:0 20",
		}},
		{"held state of another job is refused", cfg(1, 1), []string{
			"joinheld 10 2 other", "err holds the state of job \"other\"",
		}},
		{"an abort stops the run at once", cfg(2, 2), []string{
			"join", "join", "at 1s", "expect running g1 run w1,w2 fresh 0",
			"abort w1 1 12 3 non-finite steps in a row", "expect stopped g2 stop w1,w2 bcast:0 0",
			"reason run aborted by w1 at step 12: 3 non-finite steps in a row",
			"aborted w1 true", "aborted w2 true",
			"abort w2 1 12 3 non-finite steps in a row", "expect stopped g2",
		}},
		{"death of rank 0: survivors keep order, rank 1 broadcasts as new rank 0", cfg(2, 4), []string{
			"join", "join", "join", "at 1s", "expect running g1 run w1,w2,w3 fresh 0",
			"progress w1 1 40 2.5 100", "progress w2 1 41 2.5 100", "boundary w2 1 41",
			"dead w1", "expect running g2 run w2,w3 bcast:0 41", "rank w2 0 2", "rank w3 1 2", "gone w1",
			"reason w1 dead (gossip)",
		}},
		{"death of a middle rank keeps the relative order", cfg(2, 4), []string{
			"join", "join", "join", "join", "expect running g1 run w1,w2,w3,w4 fresh 0",
			"leave w3", "expect running g2 run w1,w2,w4 bcast:0 0", "rank w4 2 3",
			"leave w1", "expect running g3 run w2,w4 bcast:0 0",
		}},
		{"join during a run waits for the step boundary", cfg(2, 3), []string{
			"join", "join", "at 1s", "expect running g1 run w1,w2 fresh 0",
			"at 2s", "join", "expect running g1", "waiting w3",
			"boundary w1 0 5", "expect running g1", // stale generation number
			"boundary w2 1 12", "expect running g2 run w1,w2,w3 bcast:0 12", "rank w3 2 3",
			"reason admitted w3 at the boundary before step 12",
		}},
		{"a death admits the waiting worker at once", cfg(2, 2), []string{
			"join", "join", "join", "expect running g1 run w1,w2 fresh 0", "waiting w3",
			"boundary w1 1 9", "dead w2", "expect running g2 run w1,w3 bcast:0 9",
		}},
		{"too few: pause, timeout, checkpoint and stop", cfg(2, 2), []string{
			"join", "join", "expect running g1 run w1,w2 fresh 0", "progress w2 1 20 1.0 1",
			"at 1s", "dead w1", "expect paused g2 pause w2 bcast:0 20", "deadline 6s",
			"at 5999ms", "expect paused g2", "at 6s", "expect stopped g3 stop w2 bcast:0 20",
			"reason checkpoint and stop", "rank w2 0 1",
		}},
		{"pause then a replacement resumes from the survivor", cfg(2, 2), []string{
			"join", "join", "boundary w1 1 33", "dead w2", "expect paused g2 pause w1 bcast:0 33",
			"at 3s", "join", "expect running g3 run w1,w3 bcast:0 33", "deadline none",
		}},
		{"everyone dies: restart from the latest checkpoint", cfg(2, 2), []string{
			"join", "join", "commit w1 1 100 /ckpt/100", "commit w2 1 50 /ckpt/50",
			"dead w1", "dead w2", "expect paused g3 pause - ckpt:/ckpt/100 100",
			"join", "join", "expect running g4 run w3,w4 ckpt:/ckpt/100 100",
		}},
		{"everyone dies without a checkpoint: restart fresh; timer keeps the first pause", cfg(2, 2), []string{
			"join", "join", "at 1s", "dead w1", "at 2s", "dead w2", "expect paused g3 pause - fresh 0",
			"deadline 6s", "at 6s", "expect stopped g4 stop - fresh 0",
		}},
		{"fatal error removes the worker", cfg(1, 2), []string{
			"join", "join", "at 1s", "expect running g1 run w1,w2 fresh 0",
			"fatal w2 1 3 NaN loss", "expect running g2 run w1 bcast:0 0", "reason fatal error: NaN loss",
		}},
		{"finish stops the run", cfg(1, 1), []string{
			"join", "finished -", "finish w1 1 1000", "expect stopped g2 stop w1 bcast:0 1000", "reason training finished", "aborted w1 false",
			"finished 1000", "leave w1", "expect stopped g2", "finished 1000",
		}},
		{"a worker lost before the finish leaves the run finished", cfg(1, 3), []string{
			"join", "join", "join", "at 1s", "expect running g1 run w1,w2,w3 fresh 0",
			"dead w2", "expect running g2 run w1,w3 bcast:0 0", "finished -",
			"finish w1 2 500", "finished 500",
		}},
		{"a run stopped without a finish is not finished", cfg(1, 1), []string{
			"join", "fatal w1 1 3 NaN loss", "finished -",
		}},
		{"reports from unknown workers fail", cfg(1, 1), []string{
			"boundary w9 0 1", "err unknown worker", "leave w9", "err unknown worker",
			"join", "progress w1 1 -1 0 0", "err negative step",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "empty data address is refused" {
				r, _ := NewRendezvous(tc.cfg, t0)
				if _, err := r.Join(t0, JoinRequest{}); !errors.Is(err, ErrBadRequest) {
					t.Fatalf("got %v", err)
				}
				return
			}
			script(t, tc.cfg, tc.lines)
		})
	}
}

func TestRendezvousConfigValidation(t *testing.T) {
	for _, c := range []RendezvousConfig{
		{MinWorkers: 0, MaxWorkers: 1},
		{MinWorkers: 3, MaxWorkers: 2},
		{MinWorkers: 1, MaxWorkers: 1, JoinTimeout: -1},
	} {
		if _, err := NewRendezvous(c, t0); err == nil {
			t.Errorf("%+v: want an error", c)
		}
	}
}

func TestRendezvousAggregate(t *testing.T) {
	r := script(t, RendezvousConfig{MinWorkers: 2, MaxWorkers: 2}, []string{
		"join", "join", "progress w1 1 10 2.0 100", "progress w2 1 12 3.0 150",
	})
	a := r.Aggregate()
	if a.Workers != 2 || a.MinStep != 10 || a.MaxStep != 12 || a.Loss != 2.5 || a.SamplesPerSec != 250 || a.Generation != 1 {
		t.Fatalf("aggregate %+v", a)
	}
	ms := r.Members()
	if len(ms) != 2 || ms[0].ID != "w1" || ms[0].Rank != 0 || ms[1].Progress.Step != 12 {
		t.Fatalf("members %+v", ms)
	}
}

// Generations are numbered 1, 2, 3, ... with no gap, whatever happens.
func TestRendezvousGenerationMonotonic(t *testing.T) {
	r := script(t, RendezvousConfig{MinWorkers: 2, MaxWorkers: 3, RendezvousTimeout: time.Second}, []string{
		"join", "join", "join", "dead w2", "join", "boundary w1 2 4", "dead w1", "dead w3", "join", "at 1s",
	})
	gens := r.Generations()
	if len(gens) < 5 {
		t.Fatalf("only %d generations", len(gens))
	}
	for i, g := range gens {
		if g.Number != uint64(i+1) {
			t.Fatalf("generation %d numbered %d", i, g.Number)
		}
	}
}

// TestWatchGraceScenarios: a worker without an open Watch stream for
// WatchGrace is declared dead by Tick. Workers whose grace ends in the same
// tick are removed in a fixed order (the earliest grace first, then join
// order), so every run of a scenario opens the same generations: each
// scenario runs many times, and an order that followed a map's would
// differ between the runs.
func TestWatchGraceScenarios(t *testing.T) {
	cfg := RendezvousConfig{JobID: "job", MinWorkers: 1, MaxWorkers: 5, JoinTimeout: 10 * time.Second,
		JoinSettle: time.Second, RendezvousTimeout: 5 * time.Second, WatchGrace: 2 * time.Second}
	tests := []struct {
		name  string
		lines []string
	}{
		{"workers that never watch expire together, in join order", []string{
			"join", "join", "join", "join", "join", "watch w1", // MaxWorkers: opens at once
			"expect running g1 run w1,w2,w3,w4,w5 fresh 0", "deadline 2s",
			"at 1s", "expired -",
			"watch w2", "at 1500ms", "unwatch w2",
			"deadline 2s",
			"at 2s", "expired w3,w4,w5",
			"genreason 2 w3 dead (no Watch stream for 2s)",
			"genreason 3 w4 dead", "genreason 4 w5 dead",
			"expect running g4 run w1,w2 bcast:0 0", "gone w3", "gone w5",
			"deadline 3500ms",
			"at 3499ms", "expired -", "expect running g4",
			"at 3500ms", "expired w2", "expect running g5 run w1 bcast:0 0",
			"deadline none",
		}},
		{"the earliest grace goes first, whatever the join order", []string{
			"join", "join", "join", "join", "watch w1", "watch w2", "watch w3", "watch w4",
			"at 1s", "expect running g1 run w1,w2,w3,w4 fresh 0",
			"at 1200ms", "unwatch w4", "at 1300ms", "unwatch w2", "unwatch w3",
			"at 1500ms", "unwatch w1", "watch w1", // a new stream in time
			"deadline 3200ms",
			"at 4s", "expired w4,w2,w3",
			"genreason 2 w4 dead", "genreason 3 w2 dead", "genreason 4 w3 dead",
			"expect running g4 run w1 bcast:0 0", "expired w4,w2,w3", "deadline none",
		}},
		{"a second stream keeps the worker watched", []string{
			"join", "watch w1", "watch w1", "at 1s", "expect running g1 run w1 fresh 0",
			"unwatch w1", "at 10s", "expired -", "expect running g1",
			"unwatch w1", "deadline 12s", "at 12s", "expired w1", "expect paused g2 pause - fresh 0",
		}},
		{"a stopped run expires no one", []string{
			"join", "join", "watch w1", "watch w2", "at 1s", "expect running g1 run w1,w2 fresh 0",
			"finish w1 1 5", "expect stopped g2", "unwatch w1", "unwatch w2",
			"deadline none", "at 100s", "expired -",
		}},
		{"a worker removed otherwise is no longer watched for", []string{
			"join", "join", "watch w1", "at 1s", "expect running g1 run w1,w2 fresh 0",
			"leave w2", "expect running g2 run w1 bcast:0 0", "deadline none", "at 10s", "expired -",
			"watch w2", "err unknown worker",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 30 {
				script(t, cfg, tc.lines)
			}
		})
	}
}

// TestRendezvousHeldGenerationCannotWrap: a join that holds a generation
// near 2^64 is refused, so the next generation is never numbered 0 (which
// every worker would refuse as stale); the run goes on above the floor.
func TestRendezvousHeldGenerationCannotWrap(t *testing.T) {
	r, err := NewRendezvous(RendezvousConfig{JobID: "job", MinWorkers: 1, MaxWorkers: 1}, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []uint64{1<<64 - 1, MaxGeneration + 1} {
		_, err := r.Join(t0, JoinRequest{DataAddr: "10.0.0.1:1", Held: &HeldState{Step: 3, Generation: g, JobID: "job"}})
		if !errors.Is(err, ErrBadRequest) {
			t.Errorf("join holding generation %d: %v, want ErrBadRequest", g, err)
		}
	}
	if _, err := r.Join(t0, JoinRequest{DataAddr: "10.0.0.1:2", Held: &HeldState{Step: 3, Generation: MaxGeneration, JobID: "job"}}); err != nil {
		t.Fatal(err)
	}
	r.Tick(t0.Add(time.Minute))
	if g, _ := r.Current(); g.Number != MaxGeneration+1 {
		t.Errorf("generation %d after a join holding %d, want %d", g.Number, uint64(MaxGeneration), uint64(MaxGeneration+1))
	}
}

package observe

import (
	"bytes"
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infonce/infonce/coordinator"
)

// fakeStatus is a StatusSource whose snapshot a test sets.
type fakeStatus struct {
	mu sync.Mutex
	st coordinator.Status
}

func (f *fakeStatus) Status() coordinator.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeStatus) set(st coordinator.Status) {
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
}

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// runningStatus is a run in generation 3 with two active workers, one
// pending and one dead, at step 120.
func runningStatus() coordinator.Status {
	return coordinator.Status{
		JobID: "test", Phase: coordinator.PhaseRunning, Addr: "127.0.0.1:7950", StartedAt: t0, At: t0.Add(time.Minute),
		Current: coordinator.Generation{Number: 3, Action: coordinator.ActionRun, Members: []string{"w1", "w3"}},
		History: []coordinator.Generation{
			{Number: 1, Action: coordinator.ActionRun, Members: []string{"w1", "w2"}, Start: coordinator.State{Kind: coordinator.StartFresh}, At: t0.Add(time.Second), Reason: "first generation with 2 workers"},
			{Number: 2, Action: coordinator.ActionPause, Members: []string{"w1"}, At: t0.Add(20 * time.Second), Reason: "w2 dead"},
			{Number: 3, Action: coordinator.ActionRun, Members: []string{"w1", "w3"}, StartStep: 80, Start: coordinator.State{Kind: coordinator.StartBroadcast}, At: t0.Add(25 * time.Second), Reason: "w3 joined"},
		},
		Members: []coordinator.MemberStatus{
			{ID: "w1", Name: "a", State: coordinator.MemberActive, Rank: 0, Step: 120, Progress: coordinator.Progress{Step: 120, Loss: 2.5, SamplesPerSec: 300}, ProgressAt: t0.Add(59 * time.Second)},
			{ID: "w3", Name: "c", State: coordinator.MemberActive, Rank: 1, Step: 119, Progress: coordinator.Progress{Step: 119, Loss: 2.7, SamplesPerSec: 310}, ProgressAt: t0.Add(58 * time.Second)},
			{ID: "w4", Name: "d", State: coordinator.MemberPending, Rank: -1},
			{ID: "w2", Name: "b", State: coordinator.MemberDead, Rank: -1, Reason: "gossip: node left or failed <b>"},
		},
		Progress: coordinator.Aggregate{Generation: 3, Workers: 2, MinStep: 119, MaxStep: 120, Loss: 2.6, SamplesPerSec: 610, At: t0.Add(59 * time.Second)},
		Latest:   &coordinator.Checkpoint{Step: 100, Path: "/runs/x/checkpoints/step-100", Generation: 3, By: "w1", At: t0.Add(40 * time.Second)},
		Gossip:   []string{"coordinator", "w1", "w3"},
	}
}

func TestCoordinatorMetrics(t *testing.T) {
	waiting := coordinator.Status{JobID: "test", Phase: coordinator.PhaseWaiting, StartedAt: t0,
		Members: []coordinator.MemberStatus{{ID: "w1", State: coordinator.MemberPending, Rank: -1}}}
	for _, tc := range []struct {
		name   string
		st     coordinator.Status
		batch  int
		want   map[string]float64 // name or name{label} → value
		absent []string
	}{
		{name: "running", st: runningStatus(), batch: 256, want: map[string]float64{
			"infonce_generation": 3, "infonce_world_size": 2, "infonce_reporting_workers": 2,
			"infonce_members{active}": 2, "infonce_members{pending}": 1, "infonce_members{dead}": 1, "infonce_members{left}": 0,
			"infonce_run_phase{running}": 1, "infonce_run_phase{waiting}": 0,
			"infonce_step": 120, "infonce_step_min": 119, "infonce_loss": 2.6, "infonce_samples_per_second": 610,
			"infonce_run_samples": 120 * 256, "infonce_checkpoint_step": 100, "infonce_checkpoint_age_seconds": 80,
			"infonce_gossip_members": 3, "infonce_coordinator_uptime_seconds": 120,
		}},
		{name: "batch unknown", st: runningStatus(), want: map[string]float64{"infonce_step": 120}, absent: []string{"infonce_run_samples"}},
		{name: "waiting", st: waiting, batch: 256, want: map[string]float64{
			"infonce_generation": 0, "infonce_members{pending}": 1, "infonce_run_phase{waiting}": 1, "infonce_reporting_workers": 0,
		}, absent: []string{"infonce_loss", "infonce_step", "infonce_checkpoint_age_seconds", "infonce_run_samples"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &fakeStatus{st: tc.st}
			reg := NewRegistry()
			if _, err := NewCoordinator(reg, src, CoordinatorOptions{Batch: tc.batch, Now: func() time.Time { return t0.Add(2 * time.Minute) }}); err != nil {
				t.Fatal(err)
			}
			for key, want := range tc.want {
				name, label, _ := strings.Cut(strings.TrimSuffix(key, "}"), "{")
				var labels []string
				if label != "" {
					labels = []string{"state", label}
					if strings.HasPrefix(name, "infonce_run_phase") {
						labels = []string{"phase", label}
					}
				}
				got, ok := value(t, reg, name, labels...)
				if !ok || math.Abs(got-want) > 1e-9*math.Max(1, want) {
					t.Errorf("%s = %g (present %v), want %g", key, got, ok, want)
				}
			}
			for _, name := range tc.absent {
				if _, ok := value(t, reg, name); ok {
					t.Errorf("%s is exported", name)
				}
			}
		})
	}
}

func TestCoordinatorHistory(t *testing.T) {
	src := &fakeStatus{}
	c, err := NewCoordinator(NewRegistry(), src, CoordinatorOptions{MaxPoints: 8})
	if err != nil {
		t.Fatal(err)
	}
	st := runningStatus()
	for i := range 20 {
		st.Progress.MaxStep = int64(10 * i)
		st.Progress.Loss = 5 - float64(i)/10
		st.Progress.At = t0.Add(time.Duration(i) * time.Second)
		src.set(st)
		c.Sample()
		c.Sample() // no new report: no new point
	}
	pts := c.Points()
	if len(pts) > 8 || len(pts) < 4 {
		t.Fatalf("%d points kept, want between 4 and 8", len(pts))
	}
	if pts[0].Step != 0 || pts[len(pts)-1].Step != 190 {
		t.Errorf("history spans steps %d..%d, want 0..190 (thinning keeps both ends)", pts[0].Step, pts[len(pts)-1].Step)
	}
	for i := 1; i < len(pts); i++ {
		if !pts[i].At.After(pts[i-1].At) {
			t.Errorf("points out of order at %d", i)
		}
	}
	// A status without reports adds nothing.
	st.Progress = coordinator.Aggregate{Generation: 4}
	src.set(st)
	c.Sample()
	if n := len(c.Points()); n != len(pts) {
		t.Errorf("%d points after an empty aggregate, want %d", n, len(pts))
	}
}

func TestCoordinatorRunStops(t *testing.T) {
	defer checkNoLeaks(t)()
	src := &fakeStatus{st: runningStatus()}
	c, err := NewCoordinator(NewRegistry(), src, CoordinatorOptions{Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for deadline := time.Now().Add(5 * time.Second); len(c.Points()) == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(c.Points()) != 1 {
		t.Errorf("%d points from one unchanging status, want 1", len(c.Points()))
	}
}

func TestStatusPage(t *testing.T) {
	src := &fakeStatus{st: runningStatus()}
	c, err := NewCoordinator(NewRegistry(), src, CoordinatorOptions{Batch: 64, Refresh: 7 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st := runningStatus()
	for i := range 30 {
		st.Progress.MaxStep = int64(4 * i)
		st.Progress.Loss = 2 + 3*math.Exp(-float64(i)/8)
		st.Progress.At = t0.Add(time.Duration(2*i) * time.Second)
		st.Progress.Generation = 1
		if st.Progress.MaxStep >= 80 {
			st.Progress.Generation = 3
		}
		src.set(st)
		c.Sample()
	}
	var b bytes.Buffer
	if err := c.WritePage(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{
		`<meta http-equiv="refresh" content="7">`,
		`<table id="members">`, `<table id="generations">`,
		`<svg class="chart" id="loss-chart"`, `<svg class="chart" id="throughput-chart"`,
		`data-series="loss"`, `data-series="B·Δstep/Δt"`, `data-series="workers&#39; rates"`,
		">w1<", ">w3<", ">w4<", ">w2<", "state-dead", "state-pending",
		"first generation with 2 workers", "broadcast from rank 0",
		"g1·2", "g3·2", // the marks of the generations that ran
		"step 100 · 20s ago",
		"gossip: node left or failed &lt;b&gt;",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if n := strings.Count(page, `<tr class="member">`); n != 4 {
		t.Errorf("%d member rows, want 4", n)
	}
	if n := strings.Count(page, `<tr class="generation">`); n != 3 {
		t.Errorf("%d generation rows, want 3", n)
	}
	if strings.Contains(page, "g2·1") {
		t.Error("the paused generation 2 is marked as a start of training")
	}
}

package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// testServer starts a coordinator on loopback and returns it with a stop
// function that cancels Serve and waits for it.
func testServer(t *testing.T, cfg Config) (*Server, func() error) {
	t.Helper()
	cfg.Logger = quietLogger(t)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	return s, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return within 10s of cancel")
			return nil
		}
	}
}

func testClient(t *testing.T, addr, token string) *Client {
	t.Helper()
	c, err := Dial(context.Background(), addr, token, WithClientLogger(quietLogger(t)),
		WithBackoff(Backoff{Base: 10 * time.Millisecond, Max: 200 * time.Millisecond, Jitter: 0.2}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// joinedClients returns n clients of s that have joined with data
// addresses on 127.0.0.1 from port on; the caller closes them
// (closeClients) before it checks for leaks.
func joinedClients(t *testing.T, s *Server, n, port int) []*Client {
	t.Helper()
	cs := make([]*Client, 0, n)
	defer func() {
		if t.Failed() {
			closeClients(cs)
		}
	}()
	for i := range n {
		c := testClient(t, s.Addr(), "")
		cs = append(cs, c)
		if _, err := c.Join(ctxT(t, 5*time.Second), JoinRequest{DataAddr: fmt.Sprintf("127.0.0.1:%d", port+i)}); err != nil {
			t.Fatal(err)
		}
	}
	return cs
}

func closeClients(cs []*Client) {
	for _, c := range cs {
		c.Close()
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestServiceRendezvousAndFailure(t *testing.T) {
	defer checkNoLeaks(t)()
	cfg := DefaultLocalConfig()
	cfg.JobID = "job-7"
	cfg.MinWorkers, cfg.MaxWorkers = 2, 3
	cfg.JoinSettle = 0
	cfg.DisableGossip = true
	cfg.Token = "s3cret"
	cfg.RunConfig = []byte(`{"batch":96}`)
	cfg.Fingerprint = fpA
	cfg.WorkerIDPrefix = "w"
	s, stop := testServer(t, cfg)

	// A wrong token is refused before anything else.
	bad := testClient(t, s.Addr(), "guess")
	if _, err := bad.Join(ctxT(t, 5*time.Second), JoinRequest{DataAddr: "127.0.0.1:1", Fingerprint: fpA}); status.Code(errors.Unwrap(err)) != codes.Unauthenticated {
		t.Fatalf("wrong token: got %v", err)
	}
	bad.Close()
	none := testClient(t, s.Addr(), "")
	if _, err := none.Join(ctxT(t, 5*time.Second), JoinRequest{DataAddr: "127.0.0.1:1", Fingerprint: fpA}); status.Code(errors.Unwrap(err)) != codes.Unauthenticated {
		t.Fatalf("no token: got %v", err)
	}
	none.Close()

	// A mismatched configuration is refused with the field named.
	odd := testClient(t, s.Addr(), "s3cret")
	_, err := odd.Join(ctxT(t, 5*time.Second), JoinRequest{DataAddr: "127.0.0.1:1",
		Fingerprint: Fingerprint{"model": "vit-t d=256", "objective": "ntxent", "batch": "1024"}})
	if status.Code(errors.Unwrap(err)) != codes.FailedPrecondition || !strings.Contains(err.Error(), `objective: run has "infonce", worker has "ntxent"`) {
		t.Fatalf("mismatch: got %v", err)
	}
	odd.Close()

	var clients []*Client
	for i := 0; i < 3; i++ {
		c := testClient(t, s.Addr(), "s3cret")
		defer c.Close()
		if _, err := c.Join(ctxT(t, 5*time.Second), JoinRequest{Name: fmt.Sprint("host", i),
			DataAddr: fmt.Sprintf("127.0.0.1:%d", 9000+i), Fingerprint: fpA}); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	// With JoinSettle 0 the first generation opens as soon as two joined;
	// the third is admitted at the first step boundary.
	var first [3]Assignment
	for i, c := range clients[:2] {
		a, err := c.NextAssignment(ctxT(t, 5*time.Second), 0)
		if err != nil {
			t.Fatal(err)
		}
		first[i] = a
	}
	if first[0].Generation != 1 || first[0].World != 2 || first[0].Rank != 0 || first[1].Rank != 1 ||
		first[0].JobID != "job-7" || string(first[0].Config) != `{"batch":96}` || first[0].Start.Kind != StartFresh {
		t.Fatalf("first generation: %+v / %+v", first[0], first[1])
	}
	if gen, err := clients[0].Boundary(ctxT(t, 5*time.Second), 1, 5); err != nil || gen != 2 {
		t.Fatalf("boundary: generation %d, %v", gen, err)
	}
	for i, c := range clients {
		a, err := c.NextAssignment(ctxT(t, 5*time.Second), 1)
		if err != nil {
			t.Fatal(err)
		}
		if a.Generation != 2 || a.Rank != i || a.World != 3 || a.StartStep != 5 || a.Start != (State{Kind: StartBroadcast}) ||
			!slices.Equal(a.Peers, []string{"127.0.0.1:9000", "127.0.0.1:9001", "127.0.0.1:9002"}) {
			t.Fatalf("worker %d, second generation: %+v", i, a)
		}
		first[i] = a
	}
	if err := clients[1].Report(ctxT(t, 5*time.Second), 2, Progress{Step: 6, Loss: 3.5, SamplesPerSec: 32}); err != nil {
		t.Fatal(err)
	}
	if err := clients[0].CommitCheckpoint(ctxT(t, 5*time.Second), 2, 6, "/ckpt/6"); err != nil {
		t.Fatal(err)
	}

	// Rank 0 goes away without a word: its stream closes, and after
	// WatchGrace the others get a new generation without it.
	gone := time.Now()
	clients[0].Close()
	var took time.Duration
	for i, c := range clients[1:] {
		a, err := c.NextAssignment(ctxT(t, 5*time.Second), 2)
		if err != nil {
			t.Fatal(err)
		}
		took = time.Since(gone)
		if a.Generation != 3 || a.World != 2 || a.Rank != i || a.Start != (State{Kind: StartBroadcast}) || a.StartStep != 6 {
			t.Fatalf("after the loss of rank 0: %+v", a)
		}
	}
	if bound := cfg.WatchGrace + 2*time.Second; took > bound {
		t.Fatalf("new generation after %v, bound %v", took, bound)
	}
	t.Logf("new generation %v after the stream of rank 0 closed (WatchGrace %v)", took, cfg.WatchGrace)

	st := s.Status()
	if st.Phase != PhaseRunning || st.Current.Number != 3 || st.Latest == nil || st.Latest.Path != "/ckpt/6" ||
		len(st.History) != 3 || st.Members[0].ID != "w2" || st.Members[2].State != MemberDead {
		t.Fatalf("status: %+v", st)
	}

	// The run finishes: every worker is told to stop, leaves, and Serve
	// returns by itself.
	if err := clients[1].Finish(ctxT(t, 5*time.Second), 3, 100); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients[1:] {
		a, err := c.NextAssignment(ctxT(t, 5*time.Second), 3)
		if err != nil || a.Action != ActionStop || a.CheckpointBeforeStop {
			t.Fatalf("stop: %+v %v", a, err)
		}
		if _, err := c.NextAssignment(ctxT(t, 5*time.Second), a.Generation); !errors.Is(err, ErrRunStopped) {
			t.Fatalf("after stop: %v", err)
		}
		if err := c.Leave(ctxT(t, 5*time.Second), "done"); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if s.Status().Phase != PhaseStopped {
		t.Fatal("not stopped")
	}
}

// Serve returns by itself once the run stopped and every worker left.
func TestServeReturnsWhenFinished(t *testing.T) {
	defer checkNoLeaks(t)()
	cfg := DefaultLocalConfig()
	cfg.DisableGossip = true
	cfg.Logger = quietLogger(t)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	c := testClient(t, s.Addr(), "")
	defer c.Close()
	if _, err := c.Join(ctxT(t, 5*time.Second), JoinRequest{DataAddr: "127.0.0.1:9100"}); err != nil {
		t.Fatal(err)
	}
	a, err := c.NextAssignment(ctxT(t, 5*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Finish(ctxT(t, 5*time.Second), a.Generation, 10); err != nil {
		t.Fatal(err)
	}
	if err := c.Leave(ctxT(t, 5*time.Second), "done"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the run finished")
	}
}

// The client retries while the coordinator is not up yet.
func TestClientWaitsForCoordinator(t *testing.T) {
	defer checkNoLeaks(t)()
	cfg := DefaultLocalConfig()
	cfg.DisableGossip = true
	cfg.Logger = quietLogger(t)
	s, err := New(cfg) // only to pick a free port
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	s.Close() // now nothing listens at addr
	c := testClient(t, addr, "")
	defer c.Close()
	joined := make(chan error, 1)
	go func() {
		_, err := c.Join(ctxT(t, 10*time.Second), JoinRequest{DataAddr: "127.0.0.1:9200"})
		joined <- err
	}()
	time.Sleep(300 * time.Millisecond) // a few refused attempts
	cfg.GRPCPort = portOf(t, addr)
	s2, stop := testServer(t, cfg)
	defer stop()
	if err := <-joined; err != nil {
		t.Fatalf("join after the coordinator came up: %v", err)
	}
	if st := s2.Status(); len(st.Members) != 1 {
		t.Fatalf("members %+v", st.Members)
	}
}

// A worker whose memberlist node dies is removed through gossip, even
// though its Watch stream stays open.
func TestGossipRemovesDeadWorker(t *testing.T) {
	defer checkNoLeaks(t)()
	cfg := DefaultLocalConfig()
	cfg.MinWorkers, cfg.MaxWorkers = 1, 2
	cfg.JoinSettle = time.Second
	cfg.WatchGrace = time.Minute // so that only gossip can detect the death
	s, stop := testServer(t, cfg)
	defer stop()
	var gossips []*Gossip
	var clients []*Client
	for i := 0; i < 2; i++ {
		c := testClient(t, s.Addr(), "")
		defer c.Close()
		id, err := c.Join(ctxT(t, 5*time.Second), JoinRequest{DataAddr: fmt.Sprintf("127.0.0.1:%d", 9300+i)})
		if err != nil {
			t.Fatal(err)
		}
		gc := DefaultLocalGossipConfig(id)
		gc.Seeds = c.GossipSeeds()
		gc.Logger = quietLogger(t)
		g, err := StartGossip(gc)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Shutdown()
		gossips = append(gossips, g)
		clients = append(clients, c)
	}
	for _, c := range clients {
		if a, err := c.NextAssignment(ctxT(t, 5*time.Second), 0); err != nil || a.World != 2 {
			t.Fatalf("%+v %v", a, err)
		}
	}
	killed := time.Now()
	gossips[1].Shutdown()
	a, err := clients[0].NextAssignment(ctxT(t, 10*time.Second), 1)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(killed)
	if a.World != 1 || a.PeerIDs[0] != clients[0].ID() {
		t.Fatalf("after the gossip death: %+v", a)
	}
	t.Logf("coordinator opened generation %d %v after the worker's memberlist node was shut down", a.Generation, took)
	st := s.Status()
	if d := st.Members[1]; d.State != MemberDead || !strings.Contains(d.Reason, "gossip") {
		t.Fatalf("status of the dead worker: %+v", d)
	}
	// The removed worker is told so on its stream.
	if _, err := clients[1].NextAssignment(ctxT(t, 5*time.Second), 1); !errors.Is(err, ErrUnknownWorker) {
		t.Fatalf("removed worker: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	mod := []func(*Config){
		func(c *Config) { c.MinWorkers = 0 },
		func(c *Config) { c.MaxWorkers = 0 },
		func(c *Config) { c.WatchGrace = 0 },
		func(c *Config) { c.BindAddr = "localhost" },
		func(c *Config) { c.BindAddr = "0.0.0.0" },
		func(c *Config) { c.GRPCPort = 70000 },
		func(c *Config) { c.Gossip.ProbeTimeout = time.Hour },
		func(c *Config) { c.GossipKey = []byte("short") },
	}
	for i, m := range mod {
		cfg := DefaultLocalConfig()
		m(&cfg)
		if s, err := New(cfg); err == nil {
			s.Close()
			t.Errorf("modification %d: want an error", i)
		}
	}
	if err := DefaultLANConfig().validate(); err == nil {
		t.Error("LAN config binds 0.0.0.0 and needs an AdvertiseAddr")
	}
	lan := DefaultLANConfig()
	lan.AdvertiseAddr = "10.1.2.3"
	if err := lan.validate(); err != nil {
		t.Errorf("LAN config with an advertise address: %v", err)
	}
}

func portOf(t *testing.T, addr string) int {
	var host string
	var port int
	if _, err := fmt.Sscanf(addr, "127.0.0.1:%d", &port); err != nil {
		t.Fatalf("address %q (%s): %v", addr, host, err)
	}
	return port
}

// A worker removed from the run sees its Watch channel close and
// NextAssignment fail with ErrUnknownWorker; it joins again with the same
// client under a new id.
func TestClientRejoinsAfterRemoval(t *testing.T) {
	defer checkNoLeaks(t)()
	cfg := DefaultLocalConfig()
	cfg.DisableGossip = true
	cfg.RendezvousTimeout = 0 // pause forever
	s, stop := testServer(t, cfg)
	defer stop()
	c := testClient(t, s.Addr(), "")
	defer c.Close()
	id, err := c.Join(ctxT(t, 5*time.Second), JoinRequest{DataAddr: "127.0.0.1:9400"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 10*time.Second)
	ch, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := <-ch; a.Generation != 1 || a.PeerIDs[0] != id {
		t.Fatalf("first: %+v", a)
	}
	// The coordinator decides the worker is dead (as if gossip said so).
	s.gossipLeft(id, "127.0.0.1:1")
	if a, ok := <-ch; ok {
		t.Fatalf("channel still open, got %+v", a)
	}
	if _, err := c.NextAssignment(ctx, 1); !errors.Is(err, ErrUnknownWorker) {
		t.Fatalf("removed: %v", err)
	}
	if err := c.Report(ctx, 1, Progress{Step: 1}); !errors.Is(err, ErrUnknownWorker) {
		t.Fatalf("report after removal: %v", err)
	}
	id2, err := c.Join(ctx, JoinRequest{DataAddr: "127.0.0.1:9400"})
	if err != nil || id2 == id {
		t.Fatalf("rejoin: %q %v", id2, err)
	}
	a, err := c.NextAssignment(ctx, 0)
	if err != nil || a.Generation != 3 || a.Start.Kind != StartFresh || a.PeerIDs[0] != id2 {
		t.Fatalf("after rejoin: %+v %v", a, err)
	}
}

// Below MinWorkers the survivor is paused, then told to checkpoint and
// stop when no replacement comes within RendezvousTimeout.
func TestServicePauseThenCheckpointAndStop(t *testing.T) {
	defer checkNoLeaks(t)()
	cfg := DefaultLocalConfig()
	cfg.DisableGossip = true
	cfg.MinWorkers, cfg.MaxWorkers = 2, 2
	cfg.RendezvousTimeout = 300 * time.Millisecond
	s, stop := testServer(t, cfg)
	defer stop()
	cs := joinedClients(t, s, 2, 9500)
	defer closeClients(cs)
	ctx := ctxT(t, 10*time.Second)
	a, err := cs[1].NextAssignment(ctx, 0)
	if err != nil || a.Rank != 1 {
		t.Fatalf("%+v %v", a, err)
	}
	if err := cs[1].Report(ctx, 1, Progress{Step: 42}); err != nil {
		t.Fatal(err)
	}
	if err := cs[0].Leave(ctx, "preempted"); err != nil {
		t.Fatal(err)
	}
	paused, err := cs[1].NextAssignment(ctx, 1)
	if err != nil || paused.Action != ActionPause || paused.World != 1 || paused.Rank != 0 || paused.StartStep != 42 {
		t.Fatalf("pause: %+v %v", paused, err)
	}
	stopped, err := cs[1].NextAssignment(ctx, paused.Generation)
	if err != nil || stopped.Action != ActionStop || !stopped.CheckpointBeforeStop || stopped.Rank != 0 {
		t.Fatalf("stop: %+v %v", stopped, err)
	}
	if d := stopped.Generation; d != 3 {
		t.Fatalf("stop in generation %d", d)
	}
	if err := cs[1].CommitCheckpoint(ctx, stopped.Generation, 42, "/ckpt/42"); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st.Latest == nil || st.Latest.Step != 42 || st.Phase != PhaseStopped {
		t.Fatalf("status %+v", st)
	}
}

func TestNoRetryFailsFastWhileTheCoordinatorIsDown(t *testing.T) {
	defer checkNoLeaks(t)()
	cfg := DefaultLocalConfig()
	cfg.DisableGossip = true
	s, stop := testServer(t, cfg)
	c := testClient(t, s.Addr(), "")
	defer c.Close()
	if _, err := c.Join(ctxT(t, 5*time.Second), JoinRequest{DataAddr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		fast bool
	}{
		{"no retry", NoRetry(ctxT(t, 3*time.Second)), true},
		{"retry until the deadline", ctxT(t, 600*time.Millisecond), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := c.Boundary(tc.ctx, 1, 5)
			took := time.Since(start)
			if err == nil {
				t.Fatal("a boundary report to a stopped coordinator succeeded")
			}
			if tc.fast && took > time.Second {
				t.Errorf("NoRetry took %v", took)
			}
			if !tc.fast && took < 500*time.Millisecond {
				t.Errorf("gave up after %v, before the deadline", took)
			}
		})
	}
}

// Once the run has stopped, a worker whose Watch stream ended (as every
// stopped worker's does) must not keep the coordinator's loop awake: the
// loop sleeps until its next real deadline instead of spinning until
// StopGrace while the last rank evaluates.
func TestStoppedRunDoesNotSpinOnClosedWatchStreams(t *testing.T) {
	defer checkNoLeaks(t)()
	cfg := DefaultLocalConfig()
	cfg.DisableGossip = true
	cfg.MinWorkers, cfg.MaxWorkers = 2, 2
	cfg.WatchGrace = 300 * time.Millisecond // long enough that a loaded machine does not expire the workers before the finish
	cfg.StopGrace = 10 * time.Second
	s, stop := testServer(t, cfg)
	defer stop()
	cs := joinedClients(t, s, 2, 9600)
	defer closeClients(cs)
	ctx := ctxT(t, 10*time.Second)
	a, err := cs[1].NextAssignment(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs[0].Finish(ctx, a.Generation, 10); err != nil {
		t.Fatal(err)
	}
	if st, err := cs[1].NextAssignment(ctx, a.Generation); err != nil || st.Action != ActionStop {
		t.Fatalf("stop: %+v %v", st, err)
	}
	// Wait until a stopped worker's stream has closed and its grace is
	// over: the state in which the loop used to spin.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		now := s.now()
		stale := 0
		for _, since := range s.rv.unwatched {
			if now.Sub(since) > cfg.WatchGrace {
				stale++
			}
		}
		phase := s.rv.Phase()
		next := s.nextWakeLocked(now)
		s.mu.Unlock()
		if phase == PhaseStopped && stale > 0 {
			if !next.After(now) {
				t.Fatalf("stopped run with %d closed Watch stream(s): next wake-up %v after now, want later", stale, next.Sub(now))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no closed Watch stream past its grace within 5s (phase %v)", phase)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A worker that joins a running ring with room asks the ring's workers,
// through their Watch streams, for their next step boundary at once: the
// workers report boundaries only now and then, and a joiner is admitted
// only at a reported one. A joiner the ring has no room for asks nothing.
func TestJoinerAsksRunningWorkersForABoundary(t *testing.T) {
	for _, tc := range []struct {
		name      string
		maxWorker int
		asks      bool
		wait      time.Duration // for the request after the join
	}{
		{"room", 2, true, 5 * time.Second},
		{"full", 1, false, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer checkNoLeaks(t)()
			cfg := DefaultLocalConfig()
			cfg.DisableGossip = true
			cfg.MinWorkers, cfg.MaxWorkers = 1, tc.maxWorker
			s, stop := testServer(t, cfg)
			defer stop()
			cs := joinedClients(t, s, 1, 9720)
			defer closeClients(cs)
			ctx := ctxT(t, 10*time.Second)
			a, err := cs[0].NextAssignment(ctx, 0)
			if err != nil || a.Action != ActionRun {
				t.Fatalf("first assignment: %+v %v", a, err)
			}
			select {
			case <-cs[0].BoundaryWanted():
				t.Fatal("a boundary was asked for with no joiner")
			case <-time.After(100 * time.Millisecond):
			}
			joiner := joinedClients(t, s, 1, 9730)
			defer closeClients(joiner)
			select {
			case <-cs[0].BoundaryWanted():
				if !tc.asks {
					t.Fatal("a joiner the ring has no room for asked for a boundary")
				}
			case <-time.After(tc.wait):
				if tc.asks {
					t.Fatal("the running worker was not asked for a boundary within 5s of the join")
				}
				return
			}
			// The request repeats the current assignment: no new generation yet.
			short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			if b, err := cs[0].NextAssignment(short, a.Generation); err == nil {
				t.Fatalf("the request for a boundary read as a new assignment: %+v", b)
			}
			// The boundary reported on request admits the joiner.
			gen, err := cs[0].Boundary(ctx, a.Generation, 7)
			if err != nil || gen != a.Generation+1 {
				t.Fatalf("boundary: generation %d, %v; want %d", gen, err, a.Generation+1)
			}
			b, err := joiner[0].NextAssignment(ctx, 0)
			if err != nil || b.Generation != gen || b.World != 2 {
				t.Fatalf("joiner's assignment: %+v %v", b, err)
			}
		})
	}
}

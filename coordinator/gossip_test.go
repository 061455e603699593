package coordinator

import (
	"testing"
	"time"
)

// Three memberlist nodes on loopback with the local timings; one is shut
// down without Leave and the others must declare it gone. The detection
// time is logged (go test -v -run TestGossipDetectsKilledNode).
func TestGossipDetectsKilledNode(t *testing.T) {
	defer checkNoLeaks(t)()
	type event struct {
		at   time.Time
		by   string
		name string
	}
	left := make(chan event, 16)
	start := func(name string, seeds []string) *Gossip {
		cfg := DefaultLocalGossipConfig(name)
		cfg.Seeds = seeds
		cfg.Logger = quietLogger(t)
		cfg.OnLeave = func(n, _ string) { left <- event{time.Now(), name, n} }
		g, err := StartGossip(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	a := start("a", nil)
	defer a.Shutdown()
	b := start("b", []string{a.Addr()})
	defer b.Shutdown()
	c := start("c", []string{a.Addr()})
	defer c.Shutdown()

	deadline := time.Now().Add(5 * time.Second)
	for len(a.Members()) != 3 || len(b.Members()) != 3 || len(c.Members()) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("cluster did not converge: a %v b %v c %v", a.Members(), b.Members(), c.Members())
		}
		time.Sleep(10 * time.Millisecond)
	}

	killed := time.Now()
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]time.Duration{}
	timeout := time.After(10 * time.Second)
	for len(seen) < 2 {
		select {
		case e := <-left:
			if e.name != "c" {
				t.Fatalf("%s reported %s gone; only c was killed", e.by, e.name)
			}
			if _, dup := seen[e.by]; !dup {
				seen[e.by] = e.at.Sub(killed)
			}
		case <-timeout:
			t.Fatalf("killed node not detected within 10s (seen %v)", seen)
		}
	}
	t.Logf("killed node declared dead after %v by a, %v by b (ProbeInterval %v, ProbeTimeout %v, SuspicionMult %d)",
		seen["a"], seen["b"], LocalGossipTimings().ProbeInterval, LocalGossipTimings().ProbeTimeout, LocalGossipTimings().SuspicionMult)
	if len(a.Members()) != 2 || len(b.Members()) != 2 {
		t.Fatalf("survivors still list c: a %v b %v", a.Members(), b.Members())
	}
	// A graceful leave is reported too.
	if err := b.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	for seenByA := false; !seenByA; {
		select {
		case e := <-left:
			if e.name != "b" {
				t.Fatalf("unexpected event %+v", e)
			}
			seenByA = e.by == "a"
		case <-time.After(5 * time.Second):
			t.Fatal("graceful leave not seen by a")
		}
	}
}

func TestStartGossipRejectsBadConfig(t *testing.T) {
	bad := []GossipConfig{
		{BindAddr: "127.0.0.1", Timings: LocalGossipTimings()},
		{Name: "x", BindAddr: "localhost", Timings: LocalGossipTimings()},
		{Name: "x", BindAddr: "0.0.0.0", Timings: LocalGossipTimings()},
		{Name: "x", BindAddr: "127.0.0.1"},
	}
	for i, cfg := range bad {
		if g, err := StartGossip(cfg); err == nil {
			_ = g.Shutdown()
			t.Errorf("config %d: want an error", i)
		}
	}
}

// The LAN timings declare a vanished node dead within 2 s up to seven
// workers and a coordinator; the terms are memberlist's (DetectionBound).
func TestGossipDetectionBound(t *testing.T) {
	lan := LANGossipTimings()
	for _, c := range []struct {
		t    GossipTimings
		n    int
		want time.Duration
	}{
		// (2n−3)·100ms + 100ms + 5·100ms + 50ms
		{lan, 4, 1150 * time.Millisecond},
		{lan, 5, 1350 * time.Millisecond},
		{lan, 8, 1950 * time.Millisecond},
		// log10(20) = 1.301: the suspicion timeout grows with the cluster
		{lan, 20, 3700*time.Millisecond + 100*time.Millisecond + time.Duration(1.30103*500e6) + 50*time.Millisecond},
		// Lifeguard's stretch applies when confirmations are expected:
		// k = 4−2 = 2 others, n−2 = 2, so 6 × 4·500ms.
		{LocalGossipTimings(), 4, 5*500*time.Millisecond + 500*time.Millisecond + 6*2*time.Second + 100*time.Millisecond},
		// and not with one other member (n−2 = 1 < k).
		{LocalGossipTimings(), 3, 3*500*time.Millisecond + 500*time.Millisecond + 2*time.Second + 100*time.Millisecond},
	} {
		got := c.t.DetectionBound(c.n)
		if d := got - c.want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("DetectionBound(%d) with %+v = %v, want %v", c.n, c.t, got, c.want)
		}
	}
	for n := 2; n <= 8; n++ {
		if b := lan.DetectionBound(n); b > 2*time.Second {
			t.Errorf("LAN timings: a vanished node of %d is declared dead within %v, over 2s", n, b)
		}
	}
	if err := lan.validate(); err != nil {
		t.Fatal(err)
	}
}

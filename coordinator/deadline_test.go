package coordinator

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestFinishRetriesAreBounded: a worker reporting the end of training to a
// coordinator that went away gives up after the Finish retry bound, even
// under a context without a deadline, instead of waiting for ever.
func TestFinishRetriesAreBounded(t *testing.T) {
	cfg := DefaultLocalConfig()
	cfg.DisableGossip = true
	cfg.Logger = quietLogger(t)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	c, err := Dial(context.Background(), s.Addr(), "", WithClientLogger(quietLogger(t)), WithFinishRetry(500*time.Millisecond),
		WithBackoff(Backoff{Base: 10 * time.Millisecond, Max: 100 * time.Millisecond, Jitter: 0.2}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Join(ctxT(t, 5*time.Second), JoinRequest{DataAddr: "127.0.0.1:9100"}); err != nil {
		t.Fatal(err)
	}
	a, err := c.NextAssignment(ctxT(t, 5*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-served
	s.Close()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- c.Finish(context.Background(), a.Generation, 10) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Finish succeeded without a coordinator")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Finish gave up after %v, want about 500ms", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Finish still retries after 15s")
	}
}

// TestJoinRetriesSayWhere: a join that finds no coordinator says so at
// Info level, naming the address, while it retries.
func TestJoinRetriesSayWhere(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := Dial(context.Background(), "127.0.0.1:1", "", WithClientLogger(log),
		WithBackoff(Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := c.Join(ctx, JoinRequest{DataAddr: "127.0.0.1:9100"}); err == nil {
		t.Fatal("joined a coordinator that does not exist")
	}
	if s := logs.String(); !strings.Contains(s, "level=INFO") || !strings.Contains(s, "coordinator=127.0.0.1:1") {
		t.Errorf("no Info line naming the coordinator while retrying:\n%s", s)
	}
}

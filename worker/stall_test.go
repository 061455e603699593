package worker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestStallDeadline(t *testing.T) {
	p := StallPolicy{Floor: time.Second, Ceiling: 10 * time.Second, Mult: 4, Window: 3}
	k := collectiveKey{kindAllReduce, 100, 4}
	ms := time.Millisecond
	for _, c := range []struct {
		name string
		runs []time.Duration
		want time.Duration
	}{
		{"not measured: the ceiling", nil, 10 * time.Second},
		{"fast: the floor", []time.Duration{10 * ms, 20 * ms}, time.Second},
		{"four times the slowest", []time.Duration{100 * ms, 400 * ms, 300 * ms}, 1600 * ms},
		{"the slowest falls out of the window", []time.Duration{900 * ms, 300 * ms, 300 * ms, 350 * ms}, 1400 * ms},
		{"capped at the ceiling", []time.Duration{5 * time.Second}, 10 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newStallDeadlines(p)
			for _, d := range c.runs {
				s.record(k, d)
			}
			if got := s.deadline(k); got != c.want {
				t.Errorf("deadline after %v = %v, want %v", c.runs, got, c.want)
			}
			if got := s.deadline(collectiveKey{kindAllReduce, 100, 3}); got != p.Ceiling {
				t.Errorf("another world size shares the measurements: %v", got)
			}
		})
	}
}

// stallingComm answers every collective after delay, or never (ctx's end)
// once stalled.
type stallingComm struct {
	Single[float32]
	delay   time.Duration
	stalled bool
}

func (c *stallingComm) AllReduce(ctx context.Context, _ []float32) error {
	if c.stalled {
		<-ctx.Done()
		return ctx.Err()
	}
	select {
	case <-time.After(c.delay):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A neighbour that stops answering ends the collective after the floor,
// not after the ceiling, once the collective has been measured; the error
// names the stall deadline.
func TestStallCommEndsAStalledCollective(t *testing.T) {
	s := newStallDeadlines(StallPolicy{Floor: 200 * time.Millisecond, Ceiling: time.Minute, Mult: 4, Window: 8})
	inner := &stallingComm{delay: 5 * time.Millisecond}
	c := s.wrap(inner)
	buf := make([]float32, 8)
	for range 5 {
		if err := c.AllReduce(context.Background(), buf); err != nil {
			t.Fatal(err)
		}
	}
	inner.stalled = true
	start := time.Now()
	err := c.AllReduce(context.Background(), buf)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "stall deadline 200ms") {
		t.Fatalf("stalled all-reduce returned %v, want the stall deadline", err)
	}
	if took < 200*time.Millisecond || took > 2*time.Second {
		t.Errorf("stalled all-reduce ended after %v, want about the 200ms floor", took)
	}
	// A cancelled parent is not a stall.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.AllReduce(ctx, buf); !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "stall") {
		t.Errorf("cancelled all-reduce returned %v", err)
	}
}

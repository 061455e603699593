package securitytest

import (
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/infonce/infonce/allreduce/dataplane"
)

// TestHostileConnectionsAreBounded opens 1,000 connections to the workers'
// data planes during a run and holds them open without a word: each
// worker admits at most dataplane.MaxAdmitting at a time and closes the
// rest at once, so the goroutines of the process stay bounded, and the run
// trains to the losses of an undisturbed one.
func TestHostileConnectionsAreBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("a two-worker run under a flood of connections; skipped with -short")
	}
	want := baseline(t)
	before := runtime.NumGoroutine()
	var opened, peak int
	got := run(t, secrets{}, func(ctx context.Context, c *cluster) {
		addrs := dataAddrs(c.srv)
		if len(addrs) == 0 {
			return
		}
		var conns []net.Conn
		defer func() {
			for _, conn := range conns {
				conn.Close()
			}
		}()
		var d net.Dialer
		for i := 0; i < 1000 && ctx.Err() == nil; i++ {
			conn, err := d.DialContext(ctx, "tcp", addrs[i%len(addrs)])
			if err != nil {
				continue
			}
			conns = append(conns, conn)
			opened++
			if i%50 == 0 {
				peak = max(peak, runtime.NumGoroutine())
			}
		}
		// Hold them while the run goes on.
		for ctx.Err() == nil {
			peak = max(peak, runtime.NumGoroutine())
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	sameLosses(t, got, want)
	if opened < 500 {
		t.Fatalf("only %d of 1,000 connections opened during the run", opened)
	}
	// The run's own goroutines, plus at most MaxAdmitting connections
	// being admitted on each of the 2 workers, with room for the run's
	// own variation.
	bound := before + 600 + 2*dataplane.MaxAdmitting
	t.Logf("%d connections held; goroutines %d before the run, %d at the peak (bound %d)", opened, before, peak, bound)
	if peak > bound {
		t.Fatalf("%d goroutines at the peak with %d hostile connections, want at most %d", peak, opened, bound)
	}
}

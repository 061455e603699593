package coordinator

import (
	"io"
	"log/slog"
	"os"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// quietLogger discards logs unless the test runs with -v, where it writes
// them at debug level.
func quietLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() && os.Getenv("COORDINATOR_TEST_LOGS") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// checkNoLeaks records the goroutines running now; the returned function
// fails the test if other goroutines are still running after a grace
// period. Use as `defer checkNoLeaks(t)()` before starting anything.
func checkNoLeaks(t *testing.T) func() {
	before := goroutineIDs()
	return func() {
		t.Helper()
		var extra []string
		deadline := time.Now().Add(5 * time.Second)
		for {
			extra = extra[:0]
			for id, stack := range goroutineStacks() {
				if _, ok := before[id]; !ok && !ignorableGoroutine(stack) {
					extra = append(extra, stack)
				}
			}
			if len(extra) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(extra) > 0 {
			sort.Strings(extra)
			t.Errorf("%d goroutines leaked:\n\n%s", len(extra), strings.Join(extra, "\n\n"))
		}
	}
}

func ignorableGoroutine(stack string) bool {
	for _, s := range []string{
		"testing.(*T).Run", "testing.tRunner", "testing.runTests", "testing.(*M).",
		"runtime.goexit0", "os/signal.signal_recv", "runtime.ensureSigM",
	} {
		if strings.Contains(stack, s) && !strings.Contains(stack, "coordinator.") {
			return true
		}
	}
	return false
}

func goroutineIDs() map[string]struct{} {
	ids := map[string]struct{}{}
	for id := range goroutineStacks() {
		ids[id] = struct{}{}
	}
	return ids
}

func goroutineStacks() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		// "goroutine 12 [running]:"
		f := strings.Fields(header)
		if len(f) >= 2 {
			out[f[1]] = g
		}
	}
	return out
}

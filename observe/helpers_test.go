package observe

import (
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value returns the value of the metric name with the given label pairs
// ("k", "v", ...) gathered from g; ok is false when it is absent. A
// histogram's value is its sample count.
func value(t *testing.T, g prometheus.Gatherer, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue(), true
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue(), true
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
			t.Fatalf("%s: unexpected type %v", name, mf.GetType())
		}
	}
	return 0, false
}

// artifactDir is where a test writes files a person may want to look at:
// $INFONCE_TEST_ARTIFACTS/name when set, else a temporary directory.
func artifactDir(t *testing.T, name string) string {
	t.Helper()
	if root := os.Getenv("INFONCE_TEST_ARTIFACTS"); root != "" {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// checkNoLeaks notes the goroutines running now; the returned function
// fails the test when goroutines started since are still running after a
// grace period. Use as `defer checkNoLeaks(t)()` before starting anything.
func checkNoLeaks(t *testing.T) func() {
	before := stacks()
	return func() {
		t.Helper()
		var extra []string
		for deadline := time.Now().Add(5 * time.Second); ; {
			extra = extra[:0]
			for id, s := range stacks() {
				if _, ok := before[id]; !ok && !harmless(s) {
					extra = append(extra, s)
				}
			}
			if len(extra) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
		if len(extra) > 0 {
			sort.Strings(extra)
			t.Errorf("%d goroutines leaked:\n\n%s", len(extra), strings.Join(extra, "\n\n"))
		}
	}
}

// harmless are goroutines of the runtime and the test framework.
func harmless(stack string) bool {
	for _, s := range []string{"testing.tRunner", "testing.(*T).Run", "testing.(*M).", "runtime.goexit0",
		"os/signal.signal_recv", "runtime.ensureSigM"} {
		if strings.Contains(stack, s) && !strings.Contains(stack, "observe.") {
			return true
		}
	}
	return false
}

// stacks maps goroutine ids to their stacks.
func stacks() map[string]string {
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
		if f := strings.Fields(header); len(f) >= 2 {
			out[f[1]] = g
		}
	}
	return out
}

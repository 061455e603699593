package worker

import (
	"strings"
	"testing"
)

func TestNetworkPathsChecked(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"runs/a", true},
		{"/srv/infonce/run-1", true},
		{".", false},
		{"", false},
		{"/", false},
		{"../elsewhere", false},
		{"runs/../../etc", false},
		{"/srv/run/../../etc", false},
		{"runs//a", false},
		{"runs/a/", false},
		{"runs/\x00a", false},
		{"runs/\na", false},
		{"..", false},
	}
	for _, tc := range tests {
		errOut, errCkpt := checkNetworkOut(tc.path, ""), checkCheckpointPath(tc.path)
		if (errOut == nil) != tc.ok || (errCkpt == nil) != tc.ok {
			t.Errorf("%q: out %v, checkpoint %v; want ok=%v", tc.path, errOut, errCkpt, tc.ok)
		}
		if errOut != nil && !strings.Contains(errOut.Error(), "--out") {
			t.Errorf("%q: %v does not say how to fix it", tc.path, errOut)
		}
	}
}

// TestOutRoot checks --out-root: the coordinator's run directory must lie
// inside it.
func TestOutRoot(t *testing.T) {
	tests := []struct {
		out, root string
		ok        bool
	}{
		{"/srv/runs/a", "/srv/runs", true},
		{"/srv/runs", "/srv/runs", true},
		{"/srv/runs/a/b", "/srv/runs/", true},
		{"/srv/runsx", "/srv/runs", false},
		{"/etc/cron.d", "/srv/runs", false},
		{"/srv", "/srv/runs", false},
		{"runs/a", ".", true},
		{"/tmp/x", ".", false},
		{"/srv/runs/a", "", true},
	}
	for _, tc := range tests {
		err := checkNetworkOut(tc.out, tc.root)
		if (err == nil) != tc.ok {
			t.Errorf("out %q, root %q: %v; want ok=%v", tc.out, tc.root, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--out") {
			t.Errorf("%v does not say how to fix it", err)
		}
	}
}

package worker

import (
	"os"
	"path/filepath"
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
		errOut, errCkpt := checkNetworkOut(tc.path, ""), checkCheckpointPath(tc.path, "")
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

// TestOutRootFollowsLinks: --out-root confines the run directory and the
// checkpoint path with their symbolic links resolved: a link inside the
// root that leads outside it does not let a path through.
func TestOutRootFollowsLinks(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "runs", "a", "checkpoints", "step-000000000001"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(outside, "checkpoints", "step-000000000001"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{filepath.Join(root, "runs", "a"), true},
		{filepath.Join(root, "runs", "new", "deeper"), true},
		{filepath.Join(root, "escape"), false},
		{filepath.Join(root, "escape", "run"), false},
		{filepath.Join(root, "escape", "not", "yet"), false},
	} {
		if err := checkNetworkOut(tc.path, root); (err == nil) != tc.ok {
			t.Errorf("out %s: %v; want ok=%v", tc.path, err, tc.ok)
		}
	}
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{filepath.Join(root, "runs", "a", "checkpoints", "step-000000000001"), true},
		{filepath.Join(root, "escape", "checkpoints", "step-000000000001"), false},
		{filepath.Join(outside, "checkpoints", "step-000000000001"), false},
	} {
		if err := checkCheckpointPath(tc.path, root); (err == nil) != tc.ok {
			t.Errorf("checkpoint %s: %v; want ok=%v", tc.path, err, tc.ok)
		}
	}
}

// TestNetworkDataChecked: the data set and class file a coordinator hands
// out are checked like the run directory.
func TestNetworkDataChecked(t *testing.T) {
	for _, tc := range []struct {
		data, classes string
		ok            bool
	}{
		{"mnist", "", true},
		{"idx:/srv/data/mnist", "", true},
		{"idx:data/mnist", "data/mnist/classes.txt", true},
		{"idx:../../etc", "", false},
		{"idx:/srv/data/../../etc", "", false},
		{"idx:", "", false},
		{"idx:/", "", false},
		{"idx:data\n", "", false},
		{"mnist", "../secrets", false},
		{"mnist", "/srv/x/../../etc/passwd", false},
	} {
		err := checkNetworkData(tc.data, tc.classes)
		if (err == nil) != tc.ok {
			t.Errorf("data %q classes %q: %v; want ok=%v", tc.data, tc.classes, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "start the worker with its own") {
			t.Errorf("%v does not say how to fix it", err)
		}
	}
}

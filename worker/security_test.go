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
		errOut, errCkpt := checkNetworkOut(tc.path), checkCheckpointPath(tc.path)
		if (errOut == nil) != tc.ok || (errCkpt == nil) != tc.ok {
			t.Errorf("%q: out %v, checkpoint %v; want ok=%v", tc.path, errOut, errCkpt, tc.ok)
		}
		if errOut != nil && !strings.Contains(errOut.Error(), "--out") {
			t.Errorf("%q: %v does not say how to fix it", tc.path, errOut)
		}
	}
}

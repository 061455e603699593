package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestBenchScalingCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bench", "scaling", "--workers", "2,1"}, 2, "--workers"},
		{[]string{"bench", "scaling", "--netem", "rate=fast"}, 2, "--netem"},
		{[]string{"bench", "scaling", "--", "--workers", "4"}, 2, "set by the benchmark"},
		{[]string{"bench", "scaling", "-h"}, 0, "threads-per-worker"},
		{[]string{"bench"}, 2, "scaling"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: exit %d (want %d), stderr %q lacks %q", tc.args, code, tc.code, stderr.String(), tc.want)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestPairRounds: each round runs the four kinds of job with the right
// batch, cores and flags, and the report's ratios follow from the medians.
func TestPairRounds(t *testing.T) {
	rate := map[string]float64{"solo": 100, "pair0": 96, "pair1": 94, "whole": 50, "two": 85}
	var mu sync.Mutex
	seen := map[string]trainJob{}
	run := func(_ context.Context, j trainJob) (float64, error) {
		tag, _, _ := strings.Cut(filepath.Base(j.Out), "-")
		mu.Lock()
		seen[tag] = j
		mu.Unlock()
		return rate[tag], nil
	}
	rates, err := pairRounds(context.Background(), 3, 40, 512, "/self", "/out", []string{"--objective", "clip"}, run, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(rates.Solo) != 3 || len(rates.Pair) != 3 || len(rates.Whole) != 3 || len(rates.Two) != 3 {
		t.Fatalf("rates %+v", rates)
	}
	flag := func(args []string, name string) string {
		if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
			return args[i+1]
		}
		return ""
	}
	for tag, want := range map[string]struct {
		batch, seed, workers string
		cores                []int
	}{
		"solo":  {"256", "", "", []int{0}},
		"pair0": {"256", "", "", []int{0}},
		"pair1": {"256", "2", "", []int{1}},
		"whole": {"512", "", "", []int{0}},
		"two":   {"512", "", "2", nil},
	} {
		j := seen[tag]
		if flag(j.Args, "--batch") != want.batch || flag(j.Args, "--seed") != want.seed || flag(j.Args, "--workers") != want.workers ||
			!slices.Equal(j.Cores, want.cores) || flag(j.Args, "--steps") != "40" || flag(j.Args, "--objective") != "clip" ||
			!slices.Contains(j.Env, "GOMAXPROCS=1") {
			t.Errorf("%s: job %+v", tag, j)
		}
	}
	p := summarizePair(rates)
	if p.Pair != 95 || p.PairOverSolo != 0.95 || p.E2 != 0.85 || p.Independent != 1.9 {
		t.Errorf("report %+v", p)
	}
	var buf bytes.Buffer
	printPair(&buf, p)
	if !strings.Contains(buf.String(), "| 100 | 95 | 50 | 85 | 0.950 | 0.850 | 1.900 |") {
		t.Errorf("report:\n%s", buf.String())
	}
}

// TestBenchPairRunsJobs runs one round of tiny jobs for real.
func TestBenchPairRunsJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs training jobs; skipped with -short")
	}
	if runtime.GOOS != "linux" || runtime.NumCPU() < 2 {
		t.Skip("bench pair pins jobs to two cores: needs Linux and 2 cores")
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"bench", "pair", "--rounds", "1", "--steps", "5", "--batch", "64", "--out", t.TempDir(),
		"--", "--hidden", "32", "--text-hidden", "16", "--dim", "8", "--log-every", "1"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "| solo | pair (each) |") || !strings.Contains(stderr.String(), "round 1/1  solo ") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
}

package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseAlternateVariant(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		want    alternateVariant
		wantErr string
	}{
		{spec: "one=--cores-per-worker 1  --threads-per-worker 1", want: alternateVariant{Label: "one", Args: []string{"--cores-per-worker", "1", "--threads-per-worker", "1"}}},
		{spec: "old=@/tmp/infonce-old --workers 2", want: alternateVariant{Label: "old", Binary: "/tmp/infonce-old", Args: []string{"--workers", "2"}}},
		{spec: "plain=", want: alternateVariant{Label: "plain", Args: []string{}}},
		{spec: "noequals", wantErr: "LABEL=ARGS"},
		{spec: "=--workers 2", wantErr: "LABEL=ARGS"},
		{spec: "a/b=--workers 2", wantErr: "slash"},
		{spec: "x=@ --workers 2", wantErr: "@ needs a path"},
		{spec: "x=--steps 10", wantErr: "set by the benchmark"},
		{spec: "x=--out=/tmp/y", wantErr: "set by the benchmark"},
	} {
		got, err := parseAlternateVariant(tc.spec)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want one containing %q", tc.spec, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.spec, err)
			continue
		}
		if got.Label != tc.want.Label || got.Binary != tc.want.Binary || !slices.Equal(got.Args, tc.want.Args) {
			t.Errorf("%q: got %+v, want %+v", tc.spec, got, tc.want)
		}
	}
}

// TestAlternateRounds: the variants run in turn, in reverse order every
// other round, each with its binary and flags; the summary's medians,
// ratios and wins follow from the rates.
func TestAlternateRounds(t *testing.T) {
	vs := []alternateVariant{
		{Label: "a", Args: []string{"--workers", "2"}},
		{Label: "b", Binary: "/other", Args: []string{"--bucket-kib", "0"}},
	}
	// Round r: a runs at 100+r, b at 90+20r (b wins rounds 1 and 2).
	rate := map[string]func(r int) float64{
		"a": func(r int) float64 { return float64(100 + r) },
		"b": func(r int) float64 { return float64(90 + 20*r) },
	}
	var order []string
	run := func(_ context.Context, j trainJob) (float64, error) {
		label, round, _ := strings.Cut(filepath.Base(j.Out), "-")
		order = append(order, label+round)
		wantBin := map[string]string{"a": "/self", "b": "/other"}[label]
		if j.Binary != wantBin {
			t.Errorf("%s: binary %s, want %s", label, j.Binary, wantBin)
		}
		if !slices.Equal(j.Args[:3], []string{"--steps", "7", "--no-eval"}) || j.Args[len(j.Args)-1] == "" {
			t.Errorf("%s: args %q", label, j.Args)
		}
		return rate[label](int(round[0] - '0')), nil
	}
	rates, err := alternateRounds(context.Background(), vs, 3, 7, "/self", "/out", run, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a0", "b0", "b1", "a1", "a2", "b2"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	rows := summarizeAlternate(vs, rates)
	if r := rows[0]; r.Median != 101 || r.Min != 100 || r.Max != 102 || r.Ratio != 1 || r.Won != 0 {
		t.Errorf("first row %+v", r)
	}
	// b: 90, 110, 130; ratios 0.9, 110/101, 130/102.
	if r := rows[1]; r.Median != 110 || r.Min != 90 || r.Max != 130 || r.Won != 2 || r.Ratio != 110.0/101 {
		t.Errorf("second row %+v", r)
	}
	var buf bytes.Buffer
	printAlternate(&buf, rows)
	if !strings.Contains(buf.String(), "| b | 110 | 90–130 | 1.089 | 2 of 3 |") {
		t.Errorf("report:\n%s", buf.String())
	}
}

func TestBenchAlternateCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bench", "alternate"}, 2, "no variant"},
		{[]string{"bench", "alternate", "--rounds", "0", "a="}, 2, "--rounds"},
		{[]string{"bench", "alternate", "a=", "a=--workers 2"}, 2, "twice"},
		{[]string{"bench", "alternate", "a=--steps 3"}, 2, "set by the benchmark"},
		{[]string{"bench", "alternate", "-h"}, 0, "LABEL=ARGS"},
		{[]string{"bench", "pair", "--batch", "63"}, 2, "even batch"},
		{[]string{"bench", "pair", "--", "--workers", "3"}, 2, "set by the benchmark"},
		{[]string{"bench", "coordinator", "--workers", "0"}, 2, "--workers"},
		{[]string{"bench", "coordinator", "--", "--steps", "3"}, 2, "set by the benchmark"},
		{[]string{"bench"}, 2, "alternate"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: exit %d (want %d), stderr %q lacks %q", tc.args, code, tc.code, stderr.String(), tc.want)
		}
	}
}

// TestBenchAlternateRunsJobs runs two tiny variants for real (the test
// binary stands in for infonce) and checks the report.
func TestBenchAlternateRunsJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs training jobs; skipped with -short")
	}
	out := t.TempDir()
	small := "--batch 64 --hidden 32 --text-hidden 16 --dim 8 --log-every 1"
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"bench", "alternate", "--rounds", "2", "--steps", "5", "--out", out,
		"base=" + small, "sgd=" + small + " --optimizer sgd"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"| base | ", "| sgd | ", " of 2 |", "runs in " + out} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, dir := range []string{"base-0", "base-1", "sgd-0", "sgd-1"} {
		if _, err := summaryRate(filepath.Join(out, dir)); err != nil {
			t.Error(err)
		}
	}
}

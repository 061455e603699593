package main

import (
	"bytes"
	"context"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestMeanStd(t *testing.T) {
	for _, tc := range []struct {
		xs        []float64
		mean, std float64
	}{
		{[]float64{3}, 3, 0},
		{[]float64{1, 2, 3}, 2, 1},
		{[]float64{2, 4, 4, 4, 5, 5, 7, 9}, 5, math.Sqrt(32.0 / 7)},
	} {
		m, s := meanStd(tc.xs)
		if math.Abs(m-tc.mean) > 1e-12 || math.Abs(s-tc.std) > 1e-12 {
			t.Errorf("meanStd(%v) = %v, %v, want %v, %v", tc.xs, m, s, tc.mean, tc.std)
		}
	}
}

// TestObjectivesPlan runs the benchmark's schedule with a runner that
// trains nothing: every job's flags, and the table made of its fields.
func TestObjectivesPlan(t *testing.T) {
	var jobs [][]string
	run := func(_ context.Context, j trainJob) (map[string]float64, error) {
		jobs = append(jobs, j.Args)
		seed, _ := strconv.Atoi(j.Args[1])
		zs := 0.5
		if slices.Contains(j.Args, "siglip") {
			zs = 0.25
		}
		return map[string]float64{"zero_shot_top1": zs + 0.01*float64(seed), "samples_per_second": 1000}, nil
	}
	p := objectivesPlan{
		Rows:    []objectivesRow{{"clip", []string{"--objective", "clip"}}, {"siglip", []string{"--objective", "siglip"}}},
		Metrics: []string{"zero_shot_top1", "samples_per_second"},
		Seeds:   3,
		Extra:   []string{"--epochs", "2"},
	}
	cells, err := runObjectives(context.Background(), p, "infonce", t.TempDir(), run, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 6 || strings.Join(jobs[4], " ") != "--seed 2 --objective siglip --epochs 2" {
		t.Fatalf("jobs %q", jobs)
	}
	var b bytes.Buffer
	printObjectives(&b, p, cells)
	for _, want := range []string{"| clip | 52.0 ± 1.0 % | 1000 ± 0 |", "| siglip | 27.0 ± 1.0 % | 1000 ± 0 |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}

	// Against the batch: steps are the samples seen over the batch.
	jobs = nil
	p.Seeds, p.Batches, p.SamplesSeen, p.Rows = 1, []int{256, 4096, 1 << 20}, 600000, p.Rows[:1]
	if cells, err = runObjectives(context.Background(), p, "infonce", t.TempDir(), run, io.Discard); err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, j := range jobs {
		i := slices.Index(j, "--steps")
		steps = append(steps, j[i+1])
	}
	if strings.Join(steps, ",") != "2343,146,1" {
		t.Errorf("steps %v, want 2343,146,1", steps)
	}
	b.Reset()
	printObjectives(&b, p, cells)
	if !strings.Contains(b.String(), "| row | B = 256 | B = 4096 | B = 1048576 |") || !strings.Contains(b.String(), "| clip | 51.0 % | 51.0 % | 51.0 % |") {
		t.Errorf("curve table:\n%s", b.String())
	}

	// A metric the summaries lack prints as a dash.
	p.Metrics, p.Batches = []string{"no_such_field"}, nil
	if cells, err = runObjectives(context.Background(), p, "infonce", t.TempDir(), run, io.Discard); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	printObjectives(&b, p, cells)
	if !strings.Contains(b.String(), "| clip | – |") {
		t.Errorf("a missing metric:\n%s", b.String())
	}
}

func TestNumericFields(t *testing.T) {
	f, err := numericFields([]byte(`{"zero_shot_top1": 0.5, "objective": "clip", "config": {"batch": 3}}`))
	if err != nil || len(f) != 1 || f["zero_shot_top1"] != 0.5 {
		t.Fatalf("numericFields = %v, %v", f, err)
	}
	if _, err := numericFields([]byte("{")); err == nil {
		t.Error("a broken summary decoded")
	}
}

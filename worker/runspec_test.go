package worker

import (
	"fmt"
	"strings"
	"testing"
)

func TestRunSpecRoundTrip(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Out = "/runs/a"
	for _, tc := range []struct {
		name    string
		in      RunSpec
		wantBad int
		wantOut string
	}{
		{"defaults", RunSpec{Config: cfg}, DefaultMaxBadSteps, "/runs/a"},
		{"explicit", RunSpec{Config: cfg, MaxBadSteps: 2, Out: "/runs/b"}, 2, "/runs/b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := EncodeRunSpec(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeRunSpec(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.MaxBadSteps != tc.wantBad || got.Config.Out != tc.wantOut || got.Fingerprint() != cfg.Fingerprint() {
				t.Fatalf("got %+v", got)
			}
		})
	}
	if _, err := DecodeRunSpec([]byte(`{"max_bad_steps": -1}`)); err == nil || !strings.Contains(err.Error(), "--max-bad-steps") {
		t.Errorf("negative max_bad_steps: %v", err)
	}
}

func TestFingerprintFieldsFollowFingerprint(t *testing.T) {
	a, b := DefaultConfig(), DefaultConfig()
	b.ImageHidden = []int{32}
	fa, fb := a.FingerprintFields(), b.FingerprintFields()
	if fa["hidden"] != "512,256" || fb["hidden"] != "32" {
		t.Fatalf("hidden: %q, %q", fa["hidden"], fb["hidden"])
	}
	b.LR = 0.5 // not part of the shape
	if got := b.FingerprintFields(); got["hidden"] != "32" || len(got) != len(fa) {
		t.Fatalf("fields: %v", got)
	}
}

// A coordinator hands every worker the run's configuration and its
// run-wide policies in one JSON document; a plain Config decodes from it.
func ExampleEncodeRunSpec() {
	cfg := DefaultConfig()
	cfg.Out = "runs/demo"
	b, _ := EncodeRunSpec(RunSpec{Config: cfg, MaxBadSteps: 3})
	spec, _ := DecodeRunSpec(b)
	fmt.Println(spec.Objective, spec.Batch, spec.MaxBadSteps, spec.Config.Out)
	// Output: clip 512 3 runs/demo
}

func FuzzDecodeRunSpec(f *testing.F) {
	b, _ := EncodeRunSpec(RunSpec{Config: DefaultConfig(), MaxBadSteps: 4})
	f.Add(b)
	f.Add([]byte(`{"max_bad_steps": 0}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeRunSpec(b)
		if err == nil && s.MaxBadSteps < 1 {
			t.Fatalf("decoded MaxBadSteps %d", s.MaxBadSteps)
		}
	})
}

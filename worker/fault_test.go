package worker

import (
	"reflect"
	"strings"
	"testing"
)

// TestParseFaults reads the fault variables through a lookup, as the
// faultinject build reads them from the environment.
func TestParseFaults(t *testing.T) {
	for _, tc := range []struct {
		name, nan, kill string
		wantErr         string
		nanSteps        []int64
		killStep        int64
	}{
		{"none", "", "", "", nil, -1},
		{"nan steps", "5, 6", "", "", []int64{5, 6}, -1},
		{"kill", "", "40", "", nil, 40},
		{"bad nan", "five", "", EnvFaultNaNSteps, nil, -1},
		{"bad kill", "", "-3", EnvFaultKillInAllReduce, nil, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{EnvFaultNaNSteps: tc.nan, EnvFaultKillInAllReduce: tc.kill}
			parsed, err := parseFaults(func(k string) string { return env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f := parsed.compile()
			killStep := int64(-1)
			for s := range f.killSteps {
				killStep = s
			}
			if killStep != tc.killStep || len(f.killSteps) > 1 || len(f.nanSteps) != len(tc.nanSteps) {
				t.Fatalf("got %+v", f)
			}
			hook := f.nanHook()
			for _, s := range tc.nanSteps {
				g := []float32{1, 2, 3}
				hook(s, g)
				if g[1] == g[1] {
					t.Errorf("step %d: no NaN injected", s)
				}
				g = []float32{1, 2, 3}
				hook(s+100, g)
				if g[1] != 2 {
					t.Errorf("step %d: NaN injected", s+100)
				}
			}
		})
	}
}

func TestParseFaultsDumpAndSampleLog(t *testing.T) {
	env := map[string]string{EnvDumpGrads: "/tmp/d:0, 3", EnvSampleLog: "/tmp/s.jsonl"}
	f, err := parseFaults(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := Faults{DumpGradsDir: "/tmp/d", DumpGradsSteps: []int64{0, 3}, SampleLog: "/tmp/s.jsonl"}
	if !reflect.DeepEqual(f, want) {
		t.Fatalf("got %+v, want %+v", f, want)
	}
	for _, bad := range []string{"nodir", ":1", "/tmp/d:x"} {
		env[EnvDumpGrads] = bad
		if _, err := parseFaults(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), EnvDumpGrads) {
			t.Errorf("%s=%q: err = %v", EnvDumpGrads, bad, err)
		}
	}
}

// TestFaultsOr: the faults given as options win; the environment's (in a
// faultinject build) fill the fields the options leave unset.
func TestFaultsOr(t *testing.T) {
	opt := Faults{NaNSteps: []int64{1}}
	env := Faults{NaNSteps: []int64{7}, KillInAllReduce: []int64{9}, SampleLog: "s"}
	got := opt.or(env)
	want := Faults{NaNSteps: []int64{1}, KillInAllReduce: []int64{9}, SampleLog: "s"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if c := (Faults{}).compile(); c.nanHook() != nil || c.dumpHook() != nil || len(c.killSteps) != 0 {
		t.Fatalf("the zero Faults inject %+v", c)
	}
}

package deploy

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestReadLosses(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[int64]float64
		wantErr string
	}{
		{"empty", "", map[int64]float64{}, ""},
		{"two steps", `{"step":0,"loss":2.5}` + "\n" + `{"step":1,"loss":2.25,"lr":0.001}` + "\n",
			map[int64]float64{0: 2.5, 1: 2.25}, ""},
		{"last line per step wins", `{"step":0,"loss":2.5}` + "\n" + `{"step":1,"loss":9}` + "\n" + `{"step":1,"loss":2.25}`,
			map[int64]float64{0: 2.5, 1: 2.25}, ""},
		{"blank lines and CRLF", "\r\n" + `{"step":3,"loss":1}` + "\r\n  \n",
			map[int64]float64{3: 1}, ""},
		{"not JSON", `{"step":0,"loss":2.5}` + "\nstep 1 loss 2\n", nil, "metrics line 2"},
		{"no loss", `{"step":0}`, nil, `no "step" or no "loss"`},
		{"no step", `{"loss":1}`, nil, `no "step" or no "loss"`},
		{"negative step", `{"step":-1,"loss":1}`, nil, "negative step"},
		{"line too long", `{"step":0,"loss":1,"x":"` + strings.Repeat("a", maxMetricsLine) + `"}`, nil, "metrics line 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadLosses(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCompareLosses(t *testing.T) {
	want := map[int64]float64{0: 4, 1: 2, 2: 1}
	tests := []struct {
		name    string
		got     map[int64]float64
		maxRel  float64
		worstAt int64
		wantErr string
	}{
		{"equal", map[int64]float64{0: 4, 1: 2, 2: 1}, 0, 0, ""},
		{"worst step", map[int64]float64{0: 4.004, 1: 2, 2: 1.01}, 0.01, 2, ""},
		{"missing step", map[int64]float64{0: 4, 2: 1}, 0, 0, "1 of 3 steps missing (first 1)"},
		{"extra step", map[int64]float64{0: 4, 1: 2, 2: 1, 3: 1}, 0, 0, "4 steps logged, the reference has 3"},
		{"NaN", map[int64]float64{0: 4, 1: math.NaN(), 2: 1}, 0, 0, "non-finite"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := CompareLosses(tc.got, want)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(d.MaxRel-tc.maxRel) > 1e-12 || d.WorstAt != tc.worstAt || d.Steps != 3 {
				t.Errorf("got %+v, want MaxRel %g at step %d over 3 steps", d, tc.maxRel, tc.worstAt)
			}
		})
	}
	if _, err := CompareLosses(want, nil); err == nil {
		t.Error("an empty reference compared without error")
	}
}

func ExampleCompareLosses() {
	ref, _ := ReadLosses(strings.NewReader(`{"step":0,"loss":2.0}
{"step":1,"loss":1.5}
`))
	// rank 0 died after logging step 1; the survivors ran it again
	run, _ := ReadLosses(strings.NewReader(`{"step":0,"loss":2.0}
{"step":1,"loss":1.7}
{"step":1,"loss":1.5000003}
`))
	d, err := CompareLosses(run, ref)
	fmt.Printf("%d steps, max relative difference %.0e at step %d, err %v\n", d.Steps, d.MaxRel, d.WorstAt, err)
	// Output: 2 steps, max relative difference 2e-07 at step 1, err <nil>
}

func FuzzReadLosses(f *testing.F) {
	f.Add([]byte(`{"step":0,"loss":2.5}` + "\n" + `{"step":0,"loss":1}`))
	f.Add([]byte("{\"step\":1e3,\"loss\":null}\n\n"))
	f.Add([]byte("\xff\x00{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ReadLosses(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		for s := range l {
			if s < 0 {
				t.Fatalf("negative step %d accepted", s)
			}
		}
	})
}

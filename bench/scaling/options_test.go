package scaling

import (
	"io"
	"math"
	"slices"
	"testing"
	"time"
)

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		workers []int
		threads int
		pass    []string
		net     *NetLimits
		from    []string
		wantErr bool
	}{
		{name: "defaults", args: nil, workers: []int{1, 2, 4, 8}},
		{name: "pass through", args: []string{"--workers", "1,2", "--batch", "64", "--layer-norm", "--threads-per-worker", "1", "--lr=-0.5", "--hidden", "32,16"},
			workers: []int{1, 2}, threads: 1, pass: []string{"--batch", "64", "--layer-norm", "--lr=-0.5", "--hidden", "32,16"}},
		{name: "negative value", args: []string{"--min-lr", "-1", "--steps", "3"}, workers: []int{1, 2, 4, 8}, pass: []string{"--min-lr", "-1"}},
		{name: "after dashes", args: []string{"--steps", "3", "--", "--out", "x"}, workers: []int{1, 2, 4, 8}, pass: []string{"--out", "x"}},
		{name: "netem", args: []string{"--netem", "rate=1gbit,delay=1ms", "--workers=2"}, workers: []int{2},
			net: &NetLimits{RateBitsPerSecond: 1e9, Delay: time.Millisecond}},
		{name: "from several", args: []string{"--from", "a.json, b.json,,c.json"}, workers: []int{1, 2, 4, 8}, from: []string{"a.json", "b.json", "c.json"}},
		{name: "descending", args: []string{"--workers", "2,1"}, wantErr: true},
		{name: "zero workers", args: []string{"--workers", "0,1"}, wantErr: true},
		{name: "zero steps", args: []string{"--steps", "0"}, wantErr: true},
		{name: "bad netem", args: []string{"--netem", "rate=fast"}, wantErr: true},
		{name: "bad subnet", args: []string{"--subnet", "192.168.1"}, wantErr: true},
		{name: "workers as training flag", args: []string{"--", "--workers", "3"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseArgs(tc.args, 2, io.Discard)
			if tc.wantErr {
				if _, ok := err.(UsageError); !ok {
					t.Fatalf("ParseArgs(%q) = %v, want a UsageError", tc.args, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(o.Workers, tc.workers) || o.Threads != tc.threads || !slices.Equal(o.TrainArgs, tc.pass) {
				t.Errorf("got workers %v threads %d pass %q", o.Workers, o.Threads, o.TrainArgs)
			}
			if !slices.Equal(o.From, tc.from) {
				t.Errorf("from %q, want %q", o.From, tc.from)
			}
			if (o.Net == nil) != (tc.net == nil) || (o.Net != nil && *o.Net != *tc.net) {
				t.Errorf("net %v, want %v", o.Net, tc.net)
			}
		})
	}
}

func TestParseNetLimits(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want NetLimits
		str  string
		err  bool
	}{
		{in: "rate=1gbit,delay=1ms", want: NetLimits{1e9, time.Millisecond}, str: "rate=1gbit,delay=1ms"},
		{in: "rate=250mbit", want: NetLimits{RateBitsPerSecond: 250e6}, str: "rate=250mbit"},
		{in: " delay = 500us ", want: NetLimits{Delay: 500 * time.Microsecond}, str: "delay=500µs"},
		{in: "rate=2.5GBit", want: NetLimits{RateBitsPerSecond: 2.5e9}, str: "rate=2.5gbit"},
		{in: "", err: true},
		{in: "rate=0gbit", err: true},
		{in: "rate=NaNgbit", err: true},
		{in: "rate=infmbit", err: true},
		{in: "rate=1e308gbit", err: true},
		{in: "rate=1gb", err: true},
		{in: "loss=1%", err: true},
		{in: "delay=-1ms", err: true},
		{in: "rate", err: true},
	} {
		got, err := ParseNetLimits(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("ParseNetLimits(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want || got.String() != tc.str {
			t.Errorf("ParseNetLimits(%q) = %v (%q), %v; want %v (%q)", tc.in, got, got.String(), err, tc.want, tc.str)
		}
	}
}

func FuzzParseNetLimits(f *testing.F) {
	for _, s := range []string{"rate=1gbit,delay=1ms", "rate=10mbit", "delay=3ms", "rate=,", "x=y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseNetLimits(s)
		if err != nil {
			return
		}
		if !(n.RateBitsPerSecond >= 0) || math.IsInf(n.RateBitsPerSecond, 0) || n.Delay < 0 || (n.RateBitsPerSecond == 0 && n.Delay == 0) {
			t.Fatalf("ParseNetLimits(%q) = %+v accepted", s, n)
		}
		// What String prints parses back to the same rate and delay.
		back, err := ParseNetLimits(n.String())
		if err != nil {
			t.Fatalf("ParseNetLimits(%q) of String() of %q: %v", n.String(), s, err)
		}
		if d := back.RateBitsPerSecond - n.RateBitsPerSecond; d > 1e-9*n.RateBitsPerSecond || d < -1e-9*n.RateBitsPerSecond || back.Delay != n.Delay {
			t.Fatalf("%q → %+v → %q → %+v", s, n, n.String(), back)
		}
	})
}

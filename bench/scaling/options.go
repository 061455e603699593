package scaling

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// defaultTimeout is the deadline of one training job.
const defaultTimeout = 10 * time.Minute

// UsageError marks a mistake in the benchmark's command line.
type UsageError struct{ Err error }

func (u UsageError) Error() string { return u.Err.Error() }
func (u UsageError) Unwrap() error { return u.Err }

// Options are the settings of one scaling benchmark.
type Options struct {
	Workers   []int         // worker counts to measure, ascending
	Steps     int64         // optimizer steps of every job
	Repeat    int           // jobs per worker count; the median is reported
	Threads   int           // GOMAXPROCS of each worker; 0: cores / workers
	Out       string        // directory of the results and of the jobs' run directories
	Net       *NetLimits    // nil: loopback; otherwise one network namespace per worker
	Subnet    string        // /24 prefix of the namespaces' addresses, e.g. "10.231.7"
	TrainArgs []string      // flags passed through to every job
	Timeout   time.Duration // deadline of one job
	Cores     int           // cores of this machine (for the oversubscription note)
	From      []string      // redraw the outputs of these scaling.json files, pooled (Pool), instead of measuring
	Fit       []string      // fit the model across these scaling.json files instead of measuring
	HopMS     float64       // with Fit: λ to predict with instead of the fitted one (negative: the fitted one)
	Nice      int           // scheduling niceness of the jobs' processes (negative: ahead of other work; needs root)
}

// benchFlags are the flags the benchmark itself consumes; every other flag
// is passed through to the training jobs.
var benchFlags = map[string]bool{
	"workers": true, "steps": true, "repeat": true, "threads-per-worker": true,
	"out": true, "netem": true, "subnet": true, "job-timeout": true, "from": true, "nice": true, "fit": true, "hop-ms": true,
}

// ParseArgs reads the benchmark's command line. Flags it does not know are
// passed through to the training jobs; everything after "--" is passed
// through verbatim.
func ParseArgs(args []string, cores int, stderr io.Writer) (Options, error) {
	mine, pass := splitArgs(args)
	o := Options{Cores: cores}
	fs := flag.NewFlagSet("bench scaling", flag.ContinueOnError)
	fs.SetOutput(stderr)
	workers := fs.String("workers", "1,2,4,8", "comma-separated worker counts")
	fs.Int64Var(&o.Steps, "steps", 30, "optimizer steps of every job")
	fs.IntVar(&o.Repeat, "repeat", 1, "jobs per worker count (the median is reported)")
	fs.IntVar(&o.Threads, "threads-per-worker", 0, "GOMAXPROCS of each worker, the 1-worker reference included (default: cores / workers)")
	fs.StringVar(&o.Out, "out", "runs/scaling", "directory of the table, CSV, JSON, plots and the jobs' run directories")
	netem := fs.String("netem", "", `network limits per worker, e.g. "rate=1gbit,delay=1ms": each worker runs in its own network namespace (needs root and iproute2)`)
	fs.StringVar(&o.Subnet, "subnet", "", "with --netem: /24 prefix of the namespaces' private addresses, e.g. 10.231.7 (default chosen from 10.231.0.0/16)")
	fs.DurationVar(&o.Timeout, "job-timeout", defaultTimeout, "deadline of one training job")
	fs.IntVar(&o.Nice, "nice", 0, "run each job in its own session at niceness N, the session's scheduler autogroup included (-20..19; negative values put the jobs ahead of other work on a shared machine and need root)")
	fit := fs.String("fit", "", "fit the model across these comma-separated scaling.json files (same model; e.g. loopback and rate-limited runs), print its predictions and write model.json into --out, without measuring")
	fs.Float64Var(&o.HopMS, "hop-ms", -1, "with --fit: predict with this latency λ per ring step (ms, summed over a step's collectives) instead of the fitted one, e.g. one measured with 'infonce bench allreduce'")
	from := fs.String("from", "", "redraw the table, CSV, JSON, plots and model of this scaling.json into --out, without measuring; with several comma-separated files of the same benchmark, of their runs pooled")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: infonce bench scaling [flags] [training flags] [-- training flags]\n\nRuns the same training job at each worker count; flags not listed here go to 'infonce train'.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := fs.Parse(mine); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, UsageError{err}
	}
	o.Fit, o.From = splitList(*fit), splitList(*from)
	var err error
	if o.Workers, err = parseWorkers(*workers); err != nil {
		return o, UsageError{fmt.Errorf("--workers %q: %w", *workers, err)}
	}
	if o.Steps < 1 {
		return o, UsageError{fmt.Errorf("--steps %d: at least one step", o.Steps)}
	}
	if o.Repeat < 1 {
		return o, UsageError{fmt.Errorf("--repeat %d: at least one job", o.Repeat)}
	}
	if o.Nice < -20 || o.Nice > 19 {
		return o, UsageError{fmt.Errorf("--nice %d: use -20..19", o.Nice)}
	}
	if o.Threads < 0 {
		return o, UsageError{fmt.Errorf("--threads-per-worker %d is negative", o.Threads)}
	}
	if *netem != "" {
		nl, err := ParseNetLimits(*netem)
		if err != nil {
			return o, UsageError{fmt.Errorf("--netem %q: %w", *netem, err)}
		}
		o.Net = &nl
	}
	if o.Subnet != "" {
		if err := checkSubnet(o.Subnet); err != nil {
			return o, UsageError{fmt.Errorf("--subnet %q: %w", o.Subnet, err)}
		}
	}
	for _, a := range pass {
		if n := flagName(a); n == "workers" || n == "threads-per-worker" || n == "no-eval" {
			return o, UsageError{fmt.Errorf("training flag %s is set by the benchmark", a)}
		}
	}
	o.TrainArgs = pass
	return o, nil
}

// splitList splits a comma-separated list of files, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// splitArgs separates the benchmark's own flags from the training flags.
// A flag the benchmark does not know takes the next argument as its value
// unless that argument looks like a flag itself.
func splitArgs(args []string) (mine, pass []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return mine, append(pass, args[i+1:]...)
		}
		name := flagName(a)
		dst := &pass
		if benchFlags[name] || name == "h" || name == "help" {
			dst = &mine
		}
		*dst = append(*dst, a)
		if name != "" && !strings.Contains(a, "=") && i+1 < len(args) && !looksLikeFlag(args[i+1]) && name != "h" && name != "help" {
			*dst = append(*dst, args[i+1])
			i++
		}
	}
	return mine, pass
}

// flagName is the name of a flag argument ("--batch=8" is "batch"), or "".
func flagName(a string) string {
	if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
		return ""
	}
	n := strings.TrimLeft(a, "-")
	if i := strings.IndexByte(n, '='); i >= 0 {
		n = n[:i]
	}
	return n
}

// looksLikeFlag reports whether a is a flag rather than a (possibly
// negative) value.
func looksLikeFlag(a string) bool {
	if !strings.HasPrefix(a, "-") {
		return false
	}
	_, err := strconv.ParseFloat(a, 64)
	return err != nil
}

func parseWorkers(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		if len(out) > 0 && n <= out[len(out)-1] {
			return nil, fmt.Errorf("worker counts must ascend (%d after %d)", n, out[len(out)-1])
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

// NetLimits are the limits of each worker's link: tc tbf shapes the rate,
// tc netem adds the delay.
type NetLimits struct {
	RateBitsPerSecond float64       // 0: unlimited
	Delay             time.Duration // one-way delay added to every packet a worker sends
}

func (n NetLimits) String() string {
	var parts []string
	if n.RateBitsPerSecond > 0 {
		parts = append(parts, "rate="+formatRate(n.RateBitsPerSecond))
	}
	if n.Delay > 0 {
		parts = append(parts, "delay="+n.Delay.String())
	}
	if len(parts) == 0 {
		return "unlimited"
	}
	return strings.Join(parts, ",")
}

// ParseNetLimits reads "rate=1gbit,delay=1ms". Rates take tc's units: bit,
// kbit, mbit, gbit (powers of 1000); delays take Go durations.
func ParseNetLimits(s string) (NetLimits, error) {
	var n NetLimits
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return n, fmt.Errorf("%q is not key=value", kv)
		}
		switch strings.TrimSpace(k) {
		case "rate":
			r, err := parseRate(strings.TrimSpace(v))
			if err != nil {
				return n, err
			}
			n.RateBitsPerSecond = r
		case "delay":
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil || d < 0 {
				return n, fmt.Errorf("delay %q: want a duration such as 1ms", v)
			}
			n.Delay = d
		default:
			return n, fmt.Errorf("unknown limit %q (use rate and delay)", k)
		}
	}
	if n.RateBitsPerSecond == 0 && n.Delay == 0 {
		return n, errors.New("no limit given (use rate=1gbit and/or delay=1ms)")
	}
	return n, nil
}

var rateUnits = []struct {
	suffix string
	scale  float64
}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}}

func parseRate(v string) (float64, error) {
	lv := strings.ToLower(v)
	for _, u := range rateUnits {
		if num, ok := strings.CutSuffix(lv, u.suffix); ok {
			f, err := strconv.ParseFloat(num, 64)
			if err != nil || !(f > 0) || math.IsInf(f*u.scale, 0) {
				break
			}
			return f * u.scale, nil
		}
	}
	return 0, fmt.Errorf("rate %q: want a positive number with bit, kbit, mbit or gbit", v)
}

func formatRate(bps float64) string {
	for _, u := range rateUnits {
		if bps >= u.scale {
			return strconv.FormatFloat(bps/u.scale, 'f', -1, 64) + u.suffix
		}
	}
	return strconv.FormatFloat(bps, 'f', -1, 64) + "bit"
}

// checkSubnet accepts "10.a.b" with a, b in 0..255.
func checkSubnet(s string) error {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != "10" {
		return errors.New("want three octets of 10.0.0.0/8, e.g. 10.231.7")
	}
	for _, p := range parts[1:] {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || v > 255 {
			return fmt.Errorf("octet %q out of range", p)
		}
	}
	return nil
}

package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/infonce/infonce/allreduce"
)

// Spawner returns the command that runs one worker with the given peer
// arguments (the parent appends them after the hidden command name).
type Spawner func(ctx context.Context, args []string) *exec.Cmd

// Row is one measured line of the table (and of the JSON output).
type Row struct {
	Op            string  `json:"op"`
	Workers       int     `json:"workers"`
	Bytes         int64   `json:"bytes"`
	Count         int64   `json:"count"`
	SecondsMedian float64 `json:"seconds_median"`
	AlgbwGBps     float64 `json:"algbw_gbps"`
	BusbwGBps     float64 `json:"busbw_gbps"`
	// CPUSeconds is the CPU time (user + system) of all ranks together per
	// operation, averaged over the timed iterations (0 for --op tcp).
	CPUSeconds  float64 `json:"cpu_seconds,omitempty"`
	Iters       int     `json:"iters"`
	Transport   string  `json:"transport"`
	Wire        string  `json:"wire"`
	Compression string  `json:"compression,omitempty"`
	Bucket      int64   `json:"bucket_bytes,omitempty"`
}

// options shared by parent and worker.
type options struct {
	op          string
	sizes       []int64
	iters       int
	warmup      int
	wire        string
	compression string
	transport   string // as resolved by validate
	// transportArg is --transport as given ("auto" by default).
	transportArg string
	chunk        int
	bucket       int64
	timeout      time.Duration
	sparsity     float64
	seed         uint64
	inPlace      bool
	// inPlaceSet is whether --in-place was given (true or false) rather
	// than left to the automatic choice, which falls back quietly.
	inPlaceSet bool
	inPlaceArg autoBool
}

// autoBool is a boolean flag that may also be "auto" (its default).
type autoBool struct {
	set, val bool
}

func (b *autoBool) String() string {
	if b == nil || !b.set {
		return "auto"
	}
	return strconv.FormatBool(b.val)
}

func (b *autoBool) Set(s string) error {
	if s == "auto" {
		*b = autoBool{}
		return nil
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("%q: want true, false or auto", s)
	}
	*b = autoBool{set: true, val: v}
	return nil
}

func (b *autoBool) IsBoolFlag() bool { return true }

// transportAuto is the default of --transport: the workers' choice.
const transportAuto = "auto"

func (o *options) register(fs *flag.FlagSet) *string {
	fs.StringVar(&o.op, "op", "allreduce", "collective: allreduce, allgather, reducescatter, broadcast, fused (all-reduce through buckets of --bucket), tcp (loopback baseline, 2 workers)")
	sizes := fs.String("sizes", "4KiB,64KiB,1MiB,16MiB,64MiB", "comma-separated message sizes (B, KiB, MiB, GiB)")
	fs.IntVar(&o.iters, "iters", 20, "timed iterations per size (at least 10)")
	fs.IntVar(&o.warmup, "warmup", 3, "untimed iterations per size")
	fs.StringVar(&o.wire, "wire", "f32", "wire format of float32 payloads: f32 or bf16")
	fs.StringVar(&o.compression, "compression", "", "payload compression: \"\", s2 or zstd")
	fs.StringVar(&o.transport, "transport", transportAuto, "data plane: auto (what training workers use: shm, in place for --op allreduce and fused with --wire f32), grpc, tcp, or shm (tcp links moved to shared memory between processes of this machine)")
	o.bucket = allreduce.DefaultBucketBytes
	fs.Var((*sizeValue)(&o.chunk), "chunk", "pipelining chunk, e.g. 512KiB (0: the package default)")
	fs.Var((*sizeValue64)(&o.bucket), "bucket", "bucket size for --op fused, e.g. 4MiB")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "per-operation deadline")
	fs.Float64Var(&o.sparsity, "sparsity", 0, "fraction of zero elements in the data (for compression)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the data")
	fs.Var(&o.inPlaceArg, "in-place", "with --transport shm and --op allreduce or fused: the data live in shared vectors, which the ranks sum in place (true, false, or auto: as training workers do with --transport auto)")
	return sizes
}

func (o *options) args() []string {
	s := make([]string, len(o.sizes))
	for i, v := range o.sizes {
		s[i] = strconv.FormatInt(v, 10)
	}
	return []string{
		"--op", o.op, "--sizes", strings.Join(s, ","), "--iters", strconv.Itoa(o.iters),
		"--warmup", strconv.Itoa(o.warmup), "--wire", o.wire, "--compression", o.compression,
		"--transport", o.transportArg, "--chunk", strconv.Itoa(o.chunk), "--bucket", strconv.FormatInt(o.bucket, 10),
		"--timeout", o.timeout.String(), "--sparsity", strconv.FormatFloat(o.sparsity, 'g', -1, 64),
		"--seed", strconv.FormatUint(o.seed, 10), "--in-place=" + o.inPlaceArg.String(),
	}
}

// ParseSize parses "4096", "4KiB", "64MiB", "1GiB" (also KB/MB/GB as
// powers of 1000 and k/m/g suffixes as powers of 1024).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mul    int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"B", 1}}
	mul := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mul = strings.TrimSuffix(s, u.suffix), u.mul
			break
		}
	}
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || v < 0 || v > (1<<40)/mul {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return v * mul, nil
}

func parseSizes(s string) ([]int64, error) {
	var out []int64
	for _, f := range strings.Split(s, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		v, err := ParseSize(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("no sizes")
	}
	return out, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 || v > 64 {
			return nil, fmt.Errorf("bad worker count %q (want 1..64)", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// sizeValue is an int flag that accepts ParseSize syntax.
type sizeValue int

func (s *sizeValue) String() string { return strconv.Itoa(int(*s)) }
func (s *sizeValue) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil || n > 1<<30 {
		return fmt.Errorf("bad size %q", v)
	}
	*s = sizeValue(n)
	return nil
}

type sizeValue64 int64

func (s *sizeValue64) String() string { return strconv.FormatInt(int64(*s), 10) }
func (s *sizeValue64) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = sizeValue64(n)
	return nil
}

// UsageError marks a bad command line.
type UsageError struct{ Err error }

func (u UsageError) Error() string { return u.Err.Error() }
func (u UsageError) Unwrap() error { return u.Err }

// Main runs the benchmark: for every worker count it starts that many
// workers through spawn, prints their results as a table on stdout and, with
// --json, writes all rows to a file.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, spawn Spawner) error {
	fs := flag.NewFlagSet("bench allreduce", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	sizes := o.register(fs)
	workers := fs.String("workers", "2,4,8", "comma-separated worker counts")
	jsonPath := fs.String("json", "", "also write the rows as JSON to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return UsageError{err}
	}
	if err := o.validate(*sizes); err != nil {
		return UsageError{err}
	}
	ks, err := parseInts(*workers)
	if err != nil {
		return UsageError{err}
	}
	if o.op == "tcp" {
		ks = []int{2}
	}
	var rows []Row
	for _, k := range ks {
		fmt.Fprintf(stdout, "# op=%s workers=%d transport=%s in-place=%v wire=%s compression=%q iters=%d warmup=%d\n",
			o.op, k, o.transportArg, o.inPlaceArg.String(), o.wire, o.compression, o.iters, o.warmup)
		fmt.Fprintf(stdout, "# %12s %12s %10s %10s %10s %10s\n", "size(B)", "count(elem)", "time(us)", "algbw(GB/s)", "busbw(GB/s)", "cpu(ms)")
		got, err := runWorkers(ctx, k, o, spawn, stderr, func(r Row) {
			fmt.Fprintf(stdout, "  %12d %12d %10.1f %10.3f %10.3f %10.2f\n", r.Bytes, r.Count, r.SecondsMedian*1e6, r.AlgbwGBps, r.BusbwGBps, r.CPUSeconds*1e3)
		})
		rows = append(rows, got...)
		if len(got) > 0 {
			fmt.Fprintf(stdout, "# transport used: %s\n", got[0].Transport)
		}
		if err != nil {
			return fmt.Errorf("%d workers: %w", k, err)
		}
	}
	if *jsonPath != "" {
		b, err := json.MarshalIndent(rows, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonPath, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", *jsonPath, err)
		}
	}
	return nil
}

func (o *options) validate(sizes string) error {
	var err error
	if o.sizes, err = parseSizes(sizes); err != nil {
		return err
	}
	if !slices.Contains([]string{"allreduce", "allgather", "reducescatter", "broadcast", "fused", "tcp"}, o.op) {
		return fmt.Errorf("unknown op %q", o.op)
	}
	if o.iters < 10 {
		return fmt.Errorf("--iters %d: at least 10 timed iterations", o.iters)
	}
	if o.warmup < 0 {
		return fmt.Errorf("--warmup %d", o.warmup)
	}
	if o.sparsity < 0 || o.sparsity > 1 {
		return fmt.Errorf("--sparsity %v outside [0,1]", o.sparsity)
	}
	o.transportArg = o.transport
	if o.transport == transportAuto {
		o.transport = allreduce.ChooseTransport(false, true)
	}
	canInPlace := o.transport == allreduce.TransportSHM && (o.op == "allreduce" || o.op == "fused") && o.wire == "f32"
	o.inPlaceSet, o.inPlace = o.inPlaceArg.set, o.inPlaceArg.val
	if !o.inPlaceSet {
		o.inPlace = canInPlace && o.transportArg == transportAuto
	}
	if o.inPlace && !canInPlace {
		return fmt.Errorf("--in-place needs --transport shm, --op allreduce or fused, and --wire f32")
	}
	return nil
}

// runWorkers starts k workers, wires them together and collects rank 0's
// rows.
func runWorkers(ctx context.Context, k int, o options, spawn Spawner, stderr io.Writer, onRow func(Row)) ([]Row, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type worker struct {
		cmd   *exec.Cmd
		in    io.WriteCloser
		out   *bufio.Scanner
		stder *lockedBuffer
	}
	ws := make([]*worker, k)
	defer func() {
		for _, w := range ws {
			if w != nil && w.cmd.Process != nil {
				w.cmd.Process.Kill()
				w.cmd.Wait()
			}
		}
	}()
	for i := range ws {
		args := append([]string{"--rank", strconv.Itoa(i), "--size", strconv.Itoa(k)}, o.args()...)
		cmd := spawn(ctx, args)
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		eb := &lockedBuffer{}
		cmd.Stderr = eb
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("starting worker %d: %w", i, err)
		}
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		ws[i] = &worker{cmd: cmd, in: in, out: sc, stder: eb}
	}
	workerErr := func(i int, err error) error {
		return fmt.Errorf("worker %d: %w; its stderr:\n%s", i, err, ws[i].stder.String())
	}
	addrs := make([]string, k)
	for i, w := range ws {
		if !w.out.Scan() {
			return nil, workerErr(i, errors.New("exited before reporting its address"))
		}
		line := w.out.Text()
		a, ok := strings.CutPrefix(line, "ADDR ")
		if !ok {
			return nil, workerErr(i, fmt.Errorf("unexpected first line %q", line))
		}
		addrs[i] = a
	}
	for i, w := range ws {
		if _, err := fmt.Fprintf(w.in, "PEERS %s\n", strings.Join(addrs, ",")); err != nil {
			return nil, workerErr(i, err)
		}
	}
	// Drain the other workers' stdout so that they never block.
	var wg sync.WaitGroup
	for _, w := range ws[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w.out.Scan() {
			}
		}()
	}
	var rows []Row
	for ws[0].out.Scan() {
		line := ws[0].out.Text()
		if j, ok := strings.CutPrefix(line, "ROW "); ok {
			var r Row
			if err := json.Unmarshal([]byte(j), &r); err != nil {
				return rows, workerErr(0, fmt.Errorf("bad row %q: %v", j, err))
			}
			rows = append(rows, r)
			onRow(r)
		}
	}
	wg.Wait()
	var errs []error
	for i, w := range ws {
		w.in.Close()
		if err := w.cmd.Wait(); err != nil {
			errs = append(errs, workerErr(i, err))
		}
		w.cmd.Process = nil
	}
	firstErr := errors.Join(errs...)
	if firstErr == nil && len(rows) != len(o.sizes) {
		firstErr = workerErr(0, fmt.Errorf("reported %d rows for %d sizes", len(rows), len(o.sizes)))
	}
	return rows, firstErr
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<16 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

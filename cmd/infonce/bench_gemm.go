package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/infonce/infonce/gemm"
)

func init() {
	registerBench("gemm", benchmark{
		summary: "float32 matrix multiply GFLOPS of each kernel, 1 and more threads",
		run:     runBenchGemm,
	})
}

// gemmShape is one product C(m×n) = op(A)·op(B) of 'infonce bench gemm',
// written m x n x k/NN (NT: B transposed, TN: A transposed).
type gemmShape struct {
	m, n, k int
	tA, tB  bool
}

func (s gemmShape) String() string {
	t := map[bool]string{false: "N", true: "T"}
	return fmt.Sprintf("%dx%dx%d/%s%s", s.m, s.n, s.k, t[s.tA], t[s.tB])
}

func parseGemmShape(v string) (gemmShape, error) {
	dims, layout, _ := strings.Cut(v, "/")
	if layout == "" {
		layout = "NN"
	}
	parts := strings.Split(dims, "x")
	if len(parts) != 3 || len(layout) != 2 || strings.Trim(layout, "NT") != "" {
		return gemmShape{}, fmt.Errorf("shape %q: want MxNxK or MxNxK/NN|NT|TN|TT", v)
	}
	var d [3]int
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil || x < 1 {
			return gemmShape{}, fmt.Errorf("shape %q: dimension %q is not a positive integer", v, p)
		}
		d[i] = x
	}
	return gemmShape{m: d[0], n: d[1], k: d[2], tA: layout[0] == 'T', tB: layout[1] == 'T'}, nil
}

func runBenchGemm(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench gemm", flag.ContinueOnError)
	shapes := fs.String("shapes", "512x512x512/NN,1024x1024x1024/NN,512x512x784/NN,512x512x784/NT,512x512x784/TN",
		"comma-separated products MxNxK/AB, A and B each N (as stored) or T (transposed)")
	threads := fs.String("threads", fmt.Sprintf("1,%d", runtime.NumCPU()), "comma-separated GOMAXPROCS values")
	kernels := fs.String("kernels", "native,gonum", "comma-separated kernels: native, current, gonum, avx2, avx512")
	minTime := fs.Duration("time", time.Second, "minimum measuring time per row")
	if _, err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	var ss []gemmShape
	for _, v := range strings.Split(*shapes, ",") {
		s, err := parseGemmShape(strings.TrimSpace(v))
		if err != nil {
			return usageError{err}
		}
		ss = append(ss, s)
	}
	var ts []int
	for _, v := range strings.Split(*threads, ",") {
		t, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || t < 1 {
			return usageError{fmt.Errorf("--threads: %q is not a positive integer", v)}
		}
		ts = append(ts, t)
	}
	type namedKernel struct {
		name string
		k    gemm.Kernel32
	}
	var ks []namedKernel
	for _, name := range strings.Split(*kernels, ",") {
		name = strings.TrimSpace(name)
		var k gemm.Kernel32
		switch name {
		case "native":
			k = gemm.Native()
		case "current":
			k = gemm.Current()
		case "gonum":
			k = gemm.Gonum{}
		case "avx2", "avx512":
			get := gemm.AVX2
			if name == "avx512" {
				get = gemm.AVX512
			}
			b, err := get()
			if err != nil {
				fmt.Fprintf(stderr, "skipping %s: %v\n", name, err)
				continue
			}
			k = b
		default:
			return usageError{fmt.Errorf("--kernels: unknown kernel %q", name)}
		}
		ks = append(ks, namedKernel{name: fmt.Sprintf("%s (%v)", name, kernelName(k)), k: k})
	}

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "shape\tkernel\tthreads\tcalls\tGFLOPS\tbest GFLOPS\t")
	for _, s := range ss {
		for _, k := range ks {
			for _, t := range ts {
				runtime.GOMAXPROCS(t)
				calls, mean, best, err := timeGemm(ctx, k.k, s, *minTime)
				if err != nil {
					return err
				}
				fmt.Fprintf(tw, "%v\t%s\t%d\t%d\t%.1f\t%.1f\t\n", s, k.name, t, calls, mean, best)
			}
		}
	}
	return tw.Flush()
}

func kernelName(k gemm.Kernel32) string {
	if s, ok := k.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", k)
}

// timeGemm calls k on s until minTime has passed and returns the number of
// calls, the mean GFLOPS (2·m·n·k flops per call) and the best single call's.
func timeGemm(ctx context.Context, k gemm.Kernel32, s gemmShape, minTime time.Duration) (calls int, mean, best float64, err error) {
	rng := rand.New(rand.NewPCG(1, 2))
	a := make([]float32, s.m*s.k)
	b := make([]float32, s.k*s.n)
	c := make([]float32, s.m*s.n)
	for _, x := range [][]float32{a, b} {
		for i := range x {
			x[i] = float32(rng.Float64()*2 - 1)
		}
	}
	lda, ldb := s.k, s.n
	if s.tA {
		lda = s.m
	}
	if s.tB {
		ldb = s.k
	}
	flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
	k.Sgemm(s.tA, s.tB, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, c, s.n) // warm up caches and pools
	start := time.Now()
	for calls == 0 || time.Since(start) < minTime {
		if err := ctx.Err(); err != nil {
			return 0, 0, 0, fmt.Errorf("bench gemm: %w", err)
		}
		t0 := time.Now()
		k.Sgemm(s.tA, s.tB, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, c, s.n)
		best = max(best, flops/time.Since(t0).Seconds()/1e9)
		calls++
	}
	return calls, flops * float64(calls) / time.Since(start).Seconds() / 1e9, best, nil
}

package main

import (
	"context"
	"fmt"
	"io"
	"sort"
)

// benchmark is one kind of 'infonce bench'.
type benchmark struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var benchmarks = map[string]benchmark{}

func registerBench(name string, b benchmark) {
	if _, dup := benchmarks[name]; dup {
		panic("infonce: benchmark registered twice: " + name)
	}
	benchmarks[name] = b
}

func init() {
	register("bench", command{summary: "measure collectives, kernels and training throughput", run: runBench})
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	names := make([]string, 0, len(benchmarks))
	for n := range benchmarks {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: infonce bench <kind> [flags]\n\nkinds:")
		for _, n := range names {
			fmt.Fprintf(stderr, "  %-12s %s\n", n, benchmarks[n].summary)
		}
		return usageError{fmt.Errorf("missing benchmark kind")}
	}
	b, ok := benchmarks[args[0]]
	if !ok {
		return usageError{fmt.Errorf("unknown benchmark %q (kinds: %v)", args[0], names)}
	}
	return b.run(ctx, args[1:], stdout, stderr)
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/infonce/infonce/worker"
)

// envName is the environment variable that sets a flag when the command
// line does not: --moco-queue is INFONCE_MOCO_QUEUE.
func envName(flagName string) string {
	return "INFONCE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses args, then fills every flag the command line left unset
// from its INFONCE_… environment variable, for launchers. It returns the
// names of the flags that were set either way.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (map[string]bool, error) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
				return
			}
			set[f.Name] = true
		}
	})
	if len(errs) > 0 {
		return nil, usageError{errors.Join(errs...)}
	}
	return set, nil
}

// intList is a flag of comma-separated integers, such as --hidden 512,256.
type intList []int

func (l *intList) String() string {
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	var out []int
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return errors.New("empty list")
	}
	*l = out
	return nil
}

// gradWireFlags binds the gradient's data-plane format: --grad-wire and
// --grad-compression (see allreduce.Config.Wire and Compression).
func gradWireFlags(fs *flag.FlagSet, cfg *worker.Config) {
	fs.StringVar(&cfg.GradWire, "grad-wire", cfg.GradWire, "with several workers, the gradient's element format on the data plane: f32 (exact) or bf16 (half the bytes, rounded to bfloat16; changes the results)")
	fs.StringVar(&cfg.GradCompression, "grad-compression", cfg.GradCompression, "with several workers, compress each chunk of the gradient on the data plane: none, zstd or s2 (lossless; pays on slow links with compressible gradients)")
}

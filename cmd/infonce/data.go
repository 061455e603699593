package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/infonce/infonce/dataset"
	_ "github.com/infonce/infonce/dataset/sources" // folder:, csv:, wds:, rlds:
)

// The data command: tools over any source dataset.Open accepts.
//
//	infonce data pack --from SOURCE --out DIR     WebDataset shards of a source
//	infonce data inspect SOURCE                   counts, sizes, statistics, a contact sheet
//	infonce data verify SOURCE                    decode everything, exit 1 if anything is bad

func init() {
	register("data", command{summary: "data sets: data pack|inspect|verify (WebDataset shards, statistics and a contact sheet, a full decode)", run: runData})
}

// dataTool is one action of 'infonce data'.
type dataTool struct {
	usage string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func dataTools() map[string]dataTool {
	return map[string]dataTool{
		"pack":      {"data pack --from SOURCE --out DIR [--shard-size N] [source flags]: write WebDataset tar shards of a source", runDataPack},
		"inspect":   {"data inspect SOURCE [--contact-sheet FILE.png] [--json] [source flags]: counts, image sizes, caption lengths, action statistics, bad samples", runDataInspect},
		"verify":    {"data verify SOURCE [--json] [source flags]: decode every sample; exit status 1 if any is bad", runDataVerify},
		"synth-vla": {"data synth-vla --episodes N --out DIR [--seed S] [--format wds|rlds] [--val-fraction F] [--scene-variants V]: write the procedural tabletop manipulation data set", runSynthVLA},
	}
}

func runData(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	tools := dataTools()
	names := make([]string, 0, len(tools))
	for n := range tools {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, "usage:")
		for _, n := range names {
			fmt.Fprintf(stderr, "  infonce %s\n", tools[n].usage)
		}
		fmt.Fprintln(stderr, "\nSOURCE is one of mnist, idx:DIR, synthetic[:N], folder:DIR, csv:FILE, wds:PATTERN, rlds:DIR.")
		if len(args) == 0 {
			return usageError{errors.New("missing action: pack, inspect or verify")}
		}
		return nil
	}
	t, ok := tools[args[0]]
	if !ok {
		return usageError{fmt.Errorf("unknown data action %q (actions: %s)", args[0], strings.Join(names, ", "))}
	}
	return t.run(ctx, args[1:], stdout, stderr)
}

// dataSourceFlags are the flags that open a source, shared by the data
// tools, and the size of the pool that decodes it.
type dataSourceFlags struct {
	opts    dataset.OpenOptions
	workers int
	limit   int
}

func (d *dataSourceFlags) bind(fs *flag.FlagSet) {
	o := &d.opts
	fs.BoolVar(&o.Test, "test", false, "the test split (mnist, idx:DIR; rlds:DIR's split \"test\")")
	fs.StringVar(&o.Split, "split", "", "the split of an rlds:DIR folder (default train)")
	fs.StringVar(&o.Classes, "classes", "", "class-names file of mnist and idx:DIR")
	fs.StringVar(&o.Templates, "templates", "", "caption templates file of folder:DIR, one a line with {} for the class name")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed of the random parts of a source (synthetic samples, a folder sample's caption template)")
	fs.StringVar(&o.Separator, "separator", "", "separator of a csv: manifest (default tab)")
	fs.StringVar(&o.ImageKey, "image-key", "", "csv: image column (default filepath); rlds: image feature")
	fs.StringVar(&o.CaptionKey, "caption-key", "", "csv: caption column (default title)")
	fs.StringVar(&o.LabelKey, "label-key", "", "csv: label column (default none)")
	fs.StringVar(&o.ActionKey, "action-key", "", "csv: column of a .npy action (default none); rlds: action feature")
	fs.StringVar(&o.Instruction, "instruction", "", "rlds: instruction feature")
	fs.StringVar(&o.State, "state", "", "rlds: state feature")
	fs.StringVar(&o.CacheDir, "cache-dir", "", "where shard indexes go when the shards' folder is not writable")
	fs.IntVar(&d.workers, "workers", runtime.GOMAXPROCS(0), "goroutines decoding samples")
	fs.IntVar(&d.limit, "limit", 0, "read only the first N samples (0: all)")
}

func (d *dataSourceFlags) check() error {
	if d.workers < 1 {
		return usageError{fmt.Errorf("--workers %d: want at least 1", d.workers)}
	}
	if d.limit < 0 {
		return usageError{fmt.Errorf("--limit %d: want 0 (all) or more", d.limit)}
	}
	return nil
}

// count is the number of samples to read from src.
func (d *dataSourceFlags) count(src dataset.Source) int {
	if d.limit > 0 && d.limit < src.Len() {
		return d.limit
	}
	return src.Len()
}

// dataParse parses args, whose flags may come before and after the
// positional arguments, and returns the positional arguments.
func dataParse(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, error) {
	fs.SetOutput(stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// dataSource returns the one positional argument, the source's spec.
func dataSource(pos []string, usage string) (string, error) {
	if len(pos) != 1 {
		return "", usageError{fmt.Errorf("usage: infonce %s", usage)}
	}
	return pos[0], nil
}

// dataEach reads samples index(0), …, index(n−1) of src with a pool of
// workers goroutines, each with a dataset.Sample of its own. decode runs in
// the goroutine that read the sample, with its index, the sample and the
// error of Source.Sample (or of dataCheck); emit receives the results in order, in
// the calling goroutine. The pool works on windows of samples, so memory
// stays bounded and the order of emit does not depend on the schedule.
func dataEach[R any](ctx context.Context, src dataset.Source, n int, index func(k int) int, workers int,
	decode func(i int, s *dataset.Sample, err error) R, emit func(k int, r R) error) error {
	window := 64 * workers
	results := make([]R, min(window, n))
	samples := make([]dataset.Sample, workers)
	for lo := 0; lo < n; lo += window {
		hi := min(lo+window, n)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			next = lo
		)
		for w := range min(workers, hi-lo) {
			wg.Add(1)
			go func(s *dataset.Sample) {
				defer wg.Done()
				for {
					mu.Lock()
					k := next
					next++
					mu.Unlock()
					if k >= hi || ctx.Err() != nil {
						return
					}
					i := index(k)
					err := src.Sample(ctx, i, s)
					if err == nil {
						err = dataCheck(src, s)
					}
					results[k-lo] = decode(i, s, err)
				}
			}(&samples[w])
		}
		wg.Wait()
		if err := ctx.Err(); err != nil {
			return err
		}
		for k := lo; k < hi; k++ {
			if err := emit(k, results[k-lo]); err != nil {
				return err
			}
			var zero R
			results[k-lo] = zero
		}
	}
	return nil
}

// dataCheck finds what a source let through that no use of the sample
// would accept: a field the source promises and the sample lacks
// ("missing-FIELD"), a picture whose sizes disagree with its pixels
// ("bad-picture"), a NaN or an infinity in the action or the state
// ("non-finite-action", "non-finite-state"), the reasons the sources
// themselves give.
func dataCheck(src dataset.Source, s *dataset.Sample) error {
	bad := func(reason string, err error) error { return &dataset.BadSample{Reason: reason, Key: s.Key, Err: err} }
	for _, f := range src.Fields() {
		if !s.Has(f) {
			return bad("missing-"+string(f), fmt.Errorf("the source promises %s", f))
		}
	}
	if s.Has(dataset.FieldImage) {
		if err := s.Image.Validate(); err != nil {
			return bad("bad-picture", err)
		}
	}
	for _, v := range []struct {
		name string
		v    []float32
	}{{"action", s.Action}, {"state", s.State}} {
		for j, x := range v.v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return bad("non-finite-"+v.name, fmt.Errorf("%s value %d is %v", v.name, j, x))
			}
		}
	}
	return nil
}

// dataReadError is the reason of a sample whose read failed without a
// reason of the source's (a shard that cannot be opened, …).
const dataReadError = "read-error"

// dataKeys is how many offending keys a report names per reason.
const dataKeys = 5

// dataBad is the bad samples of one reason.
type dataBad struct {
	Reason  string   `json:"reason"`
	Count   int      `json:"count"`
	Keys    []string `json:"keys"`    // the first few, in the source's order
	Example string   `json:"example"` // the error of the first
}

// dataTally counts bad samples by reason.
type dataTally struct {
	by    map[string]*dataBad
	total int
}

// add counts a failed sample: its reason (dataReadError when err is not
// a *dataset.BadSample) and its key (the sample's index when the error
// names none).
func (t *dataTally) add(index int, key string, err error) {
	reason := dataset.Reason(err)
	var bad *dataset.BadSample
	if errors.As(err, &bad) && bad.Key != "" {
		key = bad.Key
	}
	if reason == "" {
		reason = dataReadError
	}
	if key == "" {
		key = fmt.Sprintf("#%d", index)
	}
	if t.by == nil {
		t.by = map[string]*dataBad{}
	}
	b := t.by[reason]
	if b == nil {
		b = &dataBad{Reason: reason, Example: err.Error()}
		t.by[reason] = b
	}
	b.Count++
	if len(b.Keys) < dataKeys {
		b.Keys = append(b.Keys, key)
	}
	t.total++
}

// list is the reasons, most frequent first (ties by name).
func (t *dataTally) list() []dataBad {
	out := make([]dataBad, 0, len(t.by))
	for _, b := range t.by {
		out = append(out, *b)
	}
	slices.SortFunc(out, func(a, b dataBad) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Reason, b.Reason)
	})
	return out
}

// dataPrintBad writes the table of bad samples by reason.
func dataPrintBad(w io.Writer, bad []dataBad) {
	for _, b := range bad {
		more := ""
		if b.Count > len(b.Keys) {
			more = ", …"
		}
		fmt.Fprintf(w, "  %-20s %8d  %s%s\n", b.Reason, b.Count, strings.Join(b.Keys, ", "), more)
	}
	if len(bad) > 0 {
		fmt.Fprintf(w, "  first error: %s\n", bad[0].Example)
	}
}

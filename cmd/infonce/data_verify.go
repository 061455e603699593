package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/infonce/infonce/dataset"
)

// dataVerifyReport is what 'data verify --json' prints.
type dataVerifyReport struct {
	Source  string    `json:"source"`
	Samples int       `json:"samples"` // in the source
	Read    int       `json:"read"`    // decoded (all, or --limit)
	Good    int       `json:"good"`
	Bad     int       `json:"bad"`
	Reasons []dataBad `json:"reasons,omitempty"`
	Workers int       `json:"workers"`
	Seconds float64   `json:"seconds"`
}

// runDataVerify decodes every sample of a source with a pool of
// goroutines and counts the bad ones by reason; it fails (exit status 1)
// when any is bad.
func runDataVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("data verify", flag.ContinueOnError)
	var sf dataSourceFlags
	sf.bind(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	pos, err := dataParse(fs, args, stderr)
	if err != nil {
		return err
	}
	spec, err := dataSource(pos, "data verify SOURCE [--json] [source flags]")
	if err != nil {
		return err
	}
	if err := sf.check(); err != nil {
		return err
	}
	src, err := dataset.Open(spec, sf.opts)
	if err != nil {
		return err
	}
	n := sf.count(src)
	start := time.Now()
	var bad dataTally
	type result struct {
		key string
		err error
	}
	err = dataEach(ctx, src, n, func(k int) int { return k }, sf.workers,
		func(_ int, s *dataset.Sample, err error) result { return result{s.Key, err} },
		func(k int, r result) error {
			if r.err != nil {
				bad.add(k, r.key, r.err)
			}
			return nil
		})
	if err != nil {
		return fmt.Errorf("verify %s: %w", src.Name(), err)
	}
	rep := dataVerifyReport{Source: src.Name(), Samples: src.Len(), Read: n, Good: n - bad.total, Bad: bad.total,
		Reasons: bad.list(), Workers: sf.workers, Seconds: time.Since(start).Seconds()}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "%s: decoded %d of %d samples in %.2f s (%.0f samples/s, %d goroutines): %d good, %d bad\n",
			rep.Source, n, rep.Samples, rep.Seconds, float64(n)/max(rep.Seconds, 1e-9), rep.Workers, rep.Good, rep.Bad)
		dataPrintBad(stdout, rep.Reasons)
	}
	if bad.total > 0 {
		return fmt.Errorf("%s: %d of %d samples are bad", src.Name(), bad.total, n)
	}
	return nil
}

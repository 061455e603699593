package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image/png"
	"io"
	"os"
	"path/filepath"

	"github.com/infonce/infonce/dataset"
)

// runDataInspect reads a source and reports its counts, image sizes,
// caption lengths, action and state statistics and bad samples, and
// draws a contact sheet of 64 of its samples when asked.
func runDataInspect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("data inspect", flag.ContinueOnError)
	var sf dataSourceFlags
	sf.bind(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	sheet := fs.String("contact-sheet", "", "write a PNG of 64 samples spread evenly over the source (an 8×8 grid of thumbnails with their captions or labels)")
	pos, err := dataParse(fs, args, stderr)
	if err != nil {
		return err
	}
	spec, err := dataSource(pos, "data inspect SOURCE [--contact-sheet FILE.png] [--json] [source flags]")
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
	names := dataClassNames(src)
	var st dataStats
	err = dataEach(ctx, src, n, func(k int) int { return k }, sf.workers,
		func(_ int, s *dataset.Sample, err error) dataInfo { return dataInfoOf(s, err) },
		func(k int, d dataInfo) error { st.add(k, d); return nil })
	if err != nil {
		return fmt.Errorf("inspect %s: %w", src.Name(), err)
	}
	rep := st.report(src, names)
	if *sheet != "" {
		if err := dataWriteSheet(ctx, src, n, sf.workers, names, *sheet); err != nil {
			return err
		}
		rep.ContactSheet = *sheet
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.print(stdout)
	return nil
}

// dataClassNames are the class names of src by label, nil when it has
// none.
func dataClassNames(src dataset.Source) []string {
	switch s := src.(type) {
	case dataset.Split:
		return s.Set.Classes
	case interface{ Classes() []string }:
		return s.Classes()
	}
	return nil
}

// dataSheetIndex is the k-th of the contact sheet's samples of n:
// ⌊k·n/64⌋, spread evenly (all of them when n ≤ 64).
func dataSheetIndex(k, n int) int {
	if n <= dataSheetCells {
		return k
	}
	return k * n / dataSheetCells
}

// dataWriteSheet draws the contact sheet of the first n samples of src
// into the PNG file path.
func dataWriteSheet(ctx context.Context, src dataset.Source, n, workers int, names []string, path string) error {
	m := min(n, dataSheetCells)
	cells := make([]dataCell, m)
	index := func(k int) int { return dataSheetIndex(k, n) }
	err := dataEach(ctx, src, m, index, workers,
		func(i int, s *dataset.Sample, err error) dataCell { return dataCellOf(i, s, err, names) },
		func(k int, c dataCell) error { cells[k] = c; return nil })
	if err != nil {
		return fmt.Errorf("contact sheet of %s: %w", src.Name(), err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("contact sheet: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("contact sheet: %w", err)
	}
	if err := png.Encode(f, dataDrawSheet(cells)); err != nil {
		f.Close()
		return fmt.Errorf("contact sheet %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("contact sheet %s: %w", path, err)
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/shardidx"
	"github.com/infonce/infonce/dataset/wds"
)

// dataShardName matches the names of shards and indexes pack writes.
var dataShardName = regexp.MustCompile(`^[0-9]{6,}\.tar(\.idx)?$`)

// dataPacked is one sample ready for a shard, or why it is not.
type dataPacked struct {
	key     string // the sample's key in its source, for messages
	members []wds.Member
	err     error
}

// runDataPack writes the samples of a source into WebDataset shards: the
// key of sample i is i zero-padded (at least six digits), so that the
// shards list the samples in the source's order; bad samples are skipped
// and counted by reason.
func runDataPack(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("data pack", flag.ContinueOnError)
	var sf dataSourceFlags
	sf.bind(fs)
	from := fs.String("from", "", "the source to pack (required): mnist, idx:DIR, synthetic[:N], folder:DIR, csv:FILE, wds:PATTERN, rlds:DIR")
	out := fs.String("out", "", "the folder of the shards (required): DIR/000000.tar, DIR/000001.tar, …")
	shardSize := fs.Int("shard-size", wds.DefaultShardSize, "samples per shard")
	overwrite := fs.Bool("overwrite", false, "replace the shards a folder already holds")
	pos, err := dataParse(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Errorf("unexpected argument %q: the source is --from SOURCE", pos[0])}
	}
	if *from == "" || *out == "" {
		return usageError{errors.New("usage: infonce data pack --from SOURCE --out DIR [--shard-size N]")}
	}
	if *shardSize < 1 {
		return usageError{fmt.Errorf("--shard-size %d: want at least 1", *shardSize)}
	}
	if err := sf.check(); err != nil {
		return err
	}
	if err := dataOutHoldsSource(*from, *out); err != nil {
		return err
	}
	if err := dataClearShards(*out, *overwrite, sf.opts.CacheDir); err != nil {
		return err
	}
	src, err := dataset.Open(*from, sf.opts)
	if err != nil {
		return err
	}
	n := sf.count(src)
	width := max(6, len(strconv.Itoa(max(n-1, 0))))
	w, err := wds.NewWriter(*out, wds.WriterOptions{ShardSize: *shardSize, CacheDir: sf.opts.CacheDir})
	if err != nil {
		return err
	}
	var bad dataTally
	err = dataEach(ctx, src, n, func(k int) int { return k }, sf.workers,
		func(_ int, s *dataset.Sample, err error) dataPacked {
			p := dataPacked{key: s.Key, err: err}
			if err == nil {
				if p.members, err = wds.Members(s); err != nil {
					p.err = &dataset.BadSample{Reason: "unencodable", Key: s.Key, Err: err}
				}
			}
			return p
		},
		func(k int, p dataPacked) error {
			if p.err != nil {
				if dataset.Reason(p.err) == "" {
					return fmt.Errorf("sample %d of %s: %w", k, src.Name(), p.err)
				}
				bad.add(k, p.key, p.err)
				return nil
			}
			return w.Write(fmt.Sprintf("%0*d", width, k), p.members)
		})
	if err != nil {
		w.Abort()
		return fmt.Errorf("pack %s into %s: %w (the %d complete shards are kept)", src.Name(), *out, err, len(w.Shards()))
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("pack %s: %w", src.Name(), err)
	}
	if w.Samples() == 0 {
		dataPrintBad(stderr, bad.list())
		return fmt.Errorf("pack %s: none of its %d samples is usable, no shard written", src.Name(), n)
	}
	fmt.Fprintf(stdout, "packed %d of %d samples of %s into %d shards of up to %d samples in %s\n",
		w.Samples(), n, src.Name(), len(w.Shards()), *shardSize, *out)
	fmt.Fprintf(stdout, "open them as 'wds:%s'\n", w.Pattern())
	if bad.total > 0 {
		fmt.Fprintf(stdout, "skipped %d bad samples:\n", bad.total)
		dataPrintBad(stdout, bad.list())
	}
	return nil
}

// dataOutHoldsSource refuses to pack shards into the folder they are
// read from.
func dataOutHoldsSource(from, out string) error {
	pattern, ok := strings.CutPrefix(from, "wds:")
	if !ok {
		return nil
	}
	paths, err := wds.Expand(pattern)
	if err != nil {
		return err
	}
	dst, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	for _, p := range paths {
		if a, err := filepath.Abs(filepath.Dir(p)); err == nil && a == dst {
			return usageError{fmt.Errorf("--out %s holds the shards of --from %s: write into another folder", out, from)}
		}
	}
	return nil
}

// dataClearShards refuses a folder that holds shards already, or, with
// overwrite, removes them and their indexes, so that no shard of an
// earlier pack is read as part of this one.
func dataClearShards(dir string, overwrite bool, cacheDir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	var old []string
	for _, e := range ents {
		if !e.IsDir() && dataShardName.MatchString(e.Name()) {
			old = append(old, filepath.Join(dir, e.Name()))
		}
	}
	if len(old) == 0 {
		return nil
	}
	if !overwrite {
		return fmt.Errorf("pack: %s already holds %d shard files (%s, …): choose an empty folder or pass --overwrite", dir, len(old), filepath.Base(old[0]))
	}
	for _, p := range old {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("pack: %w", err)
		}
		if filepath.Ext(p) == ".tar" {
			for _, ix := range shardidx.Paths(p, cacheDir)[1:] {
				if err := os.Remove(ix); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("pack: %w", err)
				}
			}
		}
	}
	return nil
}

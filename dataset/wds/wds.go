package wds

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/npy"
	"github.com/infonce/infonce/dataset/shardidx"
)

func init() {
	dataset.Register("wds", func(arg string, opts dataset.OpenOptions) (dataset.Source, error) {
		return Open(arg, opts)
	})
}

// IndexKind names the index of a tar shard.
const IndexKind = "tar/1"

// Flags of an index entry (Entry.N).
const (
	flagTruncated int64 = 1 // the member's data, or a header, is cut by the end of the shard
	flagCorrupt   int64 = 2 // a header that does not parse
)

// MaxMember bounds the size of one member that Sample reads.
const MaxMember = 1 << 30

// ErrCompressed refuses a compressed shard: its members cannot be read at
// random.
var ErrCompressed = errors.New("wds: compressed shard")

// ScanTar lists the regular members of the tar in f (of size bytes): name,
// offset of the data and size. A member cut by the end of the file, or a
// header cut by the end, is listed with N = 1 (truncated), a header that
// does not parse as an entry with N = 2 (corrupt); the scan stops there.
func ScanTar(f io.ReadSeeker, size int64) ([]shardidx.Entry, error) {
	var magic [4]byte
	n, _ := io.ReadFull(f, magic[:])
	switch {
	case n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		return nil, fmt.Errorf("%w: a gzip-compressed shard cannot be read at random: decompress it to a plain tar", ErrCompressed)
	case n == 4 && magic == [4]byte{0x28, 0xb5, 0x2f, 0xfd}:
		return nil, fmt.Errorf("%w: a zstd-compressed shard cannot be read at random: decompress it to a plain tar", ErrCompressed)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	tr := tar.NewReader(f)
	var out []shardidx.Entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			// A shard that ends inside a header, or a header that does
			// not parse, ends the scan with a marker entry.
			flag := flagCorrupt
			if errors.Is(err, io.ErrUnexpectedEOF) {
				flag = flagTruncated
			}
			return append(out, shardidx.Entry{Name: "", N: flag}), nil
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA {
			continue
		}
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		e := shardidx.Entry{Name: h.Name, Offset: off, Size: h.Size}
		if off+h.Size > size {
			e.N = flagTruncated
			out = append(out, e)
			return out, nil
		}
		out = append(out, e)
	}
}

// SplitName splits a member name into its key and extension: the path up
// to the first dot of the base name, and the rest ("a/b.c.d" → "a/b", "c.d").
func SplitName(name string) (key, ext string) {
	dir, base := path.Split(name)
	k, e, _ := strings.Cut(base, ".")
	return dir + k, strings.ToLower(e)
}

// Group cuts the members of one shard into samples: each run of
// consecutive members with the same key is one sample. A marker entry (no
// name: the shard is cut or corrupt there) joins the sample before it,
// which may have lost members to the cut. Group returns the first member
// of every sample.
func Group(entries []shardidx.Entry) (starts []int) {
	for i, e := range entries {
		if i == 0 {
			starts = append(starts, i)
			continue
		}
		if e.Name == "" {
			continue
		}
		k, _ := SplitName(e.Name)
		if prev, _ := SplitName(entries[i-1].Name); k != prev || entries[i-1].Name == "" {
			starts = append(starts, i)
		}
	}
	return starts
}

// member kinds, by extension.
func kindOf(ext string) dataset.Field {
	switch ext {
	case "jpg", "jpeg", "png", "gif":
		return dataset.FieldImage
	case "txt", "text", "caption", "json":
		return dataset.FieldText
	case "cls":
		return dataset.FieldLabel
	case "npy", "action.npy":
		return dataset.FieldAction
	case "state.npy":
		return dataset.FieldState
	}
	return ""
}

// fieldOrder lists the fields members can give, in the order of Fields.
var fieldOrder = []dataset.Field{dataset.FieldImage, dataset.FieldText, dataset.FieldLabel, dataset.FieldAction, dataset.FieldState}

type shard struct {
	path    string
	entries []shardidx.Entry
}

type ref struct {
	shard       int32
	first, last int32 // members [first, last)
}

// Source is a set of WebDataset shards.
type Source struct {
	name    string
	shards  []shard
	samples []ref
	fields  []dataset.Field
	opts    dataset.OpenOptions
}

// Open indexes the shards pattern names (see Expand) and returns their
// source. A shard that does not exist, or shards without any sample, are
// an error that names what was looked for.
func Open(pattern string, opts dataset.OpenOptions) (*Source, error) {
	paths, err := Expand(pattern)
	if err != nil {
		return nil, err
	}
	s := &Source{name: "wds:" + pattern, opts: opts}
	count := make([]int, len(fieldOrder))
	for si, p := range paths {
		ix, err := shardidx.Load(p, IndexKind, opts.CacheDir, func(f *os.File, size int64) ([]shardidx.Entry, error) {
			return ScanTar(f, size)
		})
		if err != nil {
			return nil, fmt.Errorf("wds: shard %d of %d of %q: %w", si+1, len(paths), pattern, err)
		}
		s.shards = append(s.shards, shard{path: p, entries: ix.Entries})
		starts := Group(ix.Entries)
		for j, st := range starts {
			end := len(ix.Entries)
			if j+1 < len(starts) {
				end = starts[j+1]
			}
			s.samples = append(s.samples, ref{int32(si), int32(st), int32(end)})
			var seen uint8 // bit j: the sample has a member of fieldOrder[j]
			for _, e := range ix.Entries[st:end] {
				_, ext := SplitName(e.Name)
				if j := slices.Index(fieldOrder, kindOf(ext)); j >= 0 {
					seen |= 1 << j
				}
			}
			for j := range fieldOrder {
				if seen&(1<<j) != 0 {
					count[j]++
				}
			}
		}
	}
	if len(s.samples) == 0 {
		return nil, fmt.Errorf("wds: %q (%d shards) holds no member: want tar files of key.jpg/key.txt/… members", pattern, len(paths))
	}
	for j, f := range fieldOrder {
		if 2*count[j] >= len(s.samples) && count[j] > 0 {
			s.fields = append(s.fields, f)
		}
	}
	if len(s.fields) == 0 {
		return nil, fmt.Errorf("wds: %q: no member with a known extension (jpg, png, txt, json, cls, npy) in %d samples", pattern, len(s.samples))
	}
	return s, nil
}

// Name is "wds:PATTERN".
func (s *Source) Name() string { return s.name }

// Len is the number of samples of all shards.
func (s *Source) Len() int { return len(s.samples) }

// Fields are the fields that at least half the samples carry.
func (s *Source) Fields() []dataset.Field { return s.fields }

// Shards is the number of shards.
func (s *Source) Shards() int { return len(s.shards) }

func readMember(f *os.File, e shardidx.Entry) ([]byte, error) {
	if e.Size > MaxMember || e.Size < 0 {
		return nil, fmt.Errorf("member of %d bytes (limit %d)", e.Size, MaxMember)
	}
	b := make([]byte, e.Size)
	if _, err := f.ReadAt(b, e.Offset); err != nil {
		return nil, err
	}
	return b, nil
}

// Sample reads sample i: its members, decoded as the package comment says.
func (s *Source) Sample(ctx context.Context, i int, dst *dataset.Sample) error {
	if i < 0 || i >= len(s.samples) {
		return fmt.Errorf("wds: %s: sample %d out of range [0, %d)", s.name, i, len(s.samples))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r := s.samples[i]
	sh := &s.shards[r.shard]
	members := sh.entries[r.first:r.last]
	dst.Reset()
	dst.Index = i
	key, _ := SplitName(members[0].Name)
	dst.Key = sh.path + ":" + key
	badf := func(reason string, err error) error {
		return &dataset.BadSample{Reason: reason, Key: dst.Key, Err: err}
	}
	for _, e := range members {
		if e.N&flagTruncated != 0 {
			return badf("truncated-tar", fmt.Errorf("shard ends inside member %q", e.Name))
		}
		if e.N&flagCorrupt != 0 {
			return badf("corrupt-tar", fmt.Errorf("a tar header after member %d does not parse", r.first))
		}
	}
	f, err := os.Open(sh.path)
	if err != nil {
		return fmt.Errorf("wds: %w", err)
	}
	defer f.Close()
	var meta map[string]any
	known := false
	for _, e := range members {
		_, ext := SplitName(e.Name)
		k := kindOf(ext)
		if k == "" {
			continue
		}
		known = true
		b, err := readMember(f, e)
		if err != nil {
			return badf("truncated-tar", fmt.Errorf("member %q: %w", e.Name, err))
		}
		switch ext {
		case "jpg", "jpeg", "png", "gif":
			if dst.Image, err = dataset.DecodeImage(b, dst.Key, s.opts.Background); err != nil {
				return err
			}
		case "txt", "text", "caption":
			dst.Text = strings.TrimSpace(string(b))
		case "cls":
			v, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil || v < 0 {
				return badf("bad-label", fmt.Errorf("cls %q is not a non-negative integer", trim(b)))
			}
			dst.Label = v
		case "json":
			if err := json.Unmarshal(b, &meta); err != nil {
				return badf("bad-json", err)
			}
		case "npy", "action.npy", "state.npy":
			a, err := npy.Decode(b)
			if err != nil {
				return badf("bad-npy", fmt.Errorf("member %q: %w", e.Name, err))
			}
			if ext == "state.npy" {
				dst.State = a.Float32(dst.State)
				if err := finite(dst.State); err != nil {
					return badf("non-finite-state", err)
				}
			} else {
				dst.Action = a.Float32(dst.Action)
				dst.ActionShape = append(dst.ActionShape, a.Shape...)
				if err := finite(dst.Action); err != nil {
					return badf("non-finite-action", err)
				}
			}
		}
	}
	if !known {
		return badf("unknown-member", fmt.Errorf("no image, txt, json, cls or npy member among %d", len(members)))
	}
	if meta != nil {
		if dst.Text == "" {
			for _, k := range []string{"caption", "text"} {
				if v, ok := meta[k].(string); ok {
					dst.Text = strings.TrimSpace(v)
					break
				}
			}
		}
		num := func(k string) (int, bool) {
			v, ok := meta[k].(float64)
			return int(v), ok && v >= 0 && v == float64(int(v))
		}
		if v, ok := num("label"); ok && dst.Label < 0 {
			dst.Label = v
		}
		if v, ok := num("task"); ok {
			dst.Task = v
		}
		if v, ok := num("scene"); ok {
			dst.Scene = int64(v)
		}
		if v, ok := num("episode"); ok {
			dst.Episode = int64(v)
			dst.Step, _ = num("step")
			dst.EpisodeLen, _ = num("episode_len")
		}
	}
	for _, f := range s.fields {
		if !dst.Has(f) {
			return badf("missing-"+string(f), fmt.Errorf("no %s among the members", f))
		}
	}
	return nil
}

func finite(v []float32) error {
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("value %d is %v", i, x)
		}
	}
	return nil
}

func trim(b []byte) string {
	if len(b) > 20 {
		return string(b[:20]) + "…"
	}
	return string(b)
}

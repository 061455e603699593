package wds

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/npy"
	"github.com/infonce/infonce/dataset/shardidx"
)

// DefaultShardSize is the number of samples of a shard when
// WriterOptions.ShardSize is zero.
const DefaultShardSize = 1000

// Member is one file of a sample in a shard: the member is named
// key + "." + Ext.
type Member struct {
	Ext  string
	Data []byte
}

// Members encodes s as the members Sample reads back into the same
// fields: the image as a lossless PNG ("png", grey stays grey, so the
// pixels read back are s.Image.Pix bit for bit), the text ("txt"), the
// label ("cls"), the action as a float32 .npy of its shape ("npy"), the
// state ("state.npy"), and the episode, step, episode length and task
// ("json"). A field s does not carry has no member.
func Members(s *dataset.Sample) ([]Member, error) {
	var out []Member
	if s.Has(dataset.FieldImage) {
		b, err := EncodePNG(s.Image)
		if err != nil {
			return nil, err
		}
		out = append(out, Member{"png", b})
	}
	if s.Text != "" {
		out = append(out, Member{"txt", []byte(s.Text)})
	}
	if s.Label >= 0 {
		out = append(out, Member{"cls", []byte(strconv.Itoa(s.Label))})
	}
	if len(s.Action) > 0 {
		shape := s.ActionShape
		if len(shape) == 0 {
			shape = []int{len(s.Action)}
		}
		var b bytes.Buffer
		if err := npy.Write(&b, shape, s.Action); err != nil {
			return nil, fmt.Errorf("wds: action of %s: %w", s.Key, err)
		}
		out = append(out, Member{"npy", b.Bytes()})
	}
	if len(s.State) > 0 {
		var b bytes.Buffer
		if err := npy.Write(&b, []int{len(s.State)}, s.State); err != nil {
			return nil, fmt.Errorf("wds: state of %s: %w", s.Key, err)
		}
		out = append(out, Member{"state.npy", b.Bytes()})
	}
	if s.Episode >= 0 || s.Task >= 0 {
		meta := map[string]int64{}
		if s.Episode >= 0 {
			meta["episode"] = s.Episode
			meta["step"] = int64(s.Step)
			meta["episode_len"] = int64(s.EpisodeLen)
		}
		if s.Task >= 0 {
			meta["task"] = int64(s.Task)
		}
		b, err := json.Marshal(meta) // keys sorted: the bytes are deterministic
		if err != nil {
			return nil, fmt.Errorf("wds: metadata of %s: %w", s.Key, err)
		}
		out = append(out, Member{"json", b})
	}
	return out, nil
}

// EncodePNG encodes p losslessly: a grey picture as an 8-bit grey PNG, an
// RGB one as an 8-bit RGB PNG (opaque, so that decoding composites
// nothing).
func EncodePNG(p dataset.Picture) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("wds: %w", err)
	}
	var im image.Image
	if p.C == 1 {
		im = &image.Gray{Pix: p.Pix, Stride: p.W, Rect: image.Rect(0, 0, p.W, p.H)}
	} else {
		m := image.NewNRGBA(image.Rect(0, 0, p.W, p.H))
		for i := range p.H * p.W {
			copy(m.Pix[4*i:4*i+3], p.Pix[3*i:3*i+3])
			m.Pix[4*i+3] = 255
		}
		im = m
	}
	var b bytes.Buffer
	if err := png.Encode(&b, im); err != nil {
		return nil, fmt.Errorf("wds: png: %w", err)
	}
	return b.Bytes(), nil
}

// WriterOptions are the settings of a Writer.
type WriterOptions struct {
	// ShardSize is the number of samples per shard (DefaultShardSize when
	// zero).
	ShardSize int
	// CacheDir is where a shard's index goes when the shard's folder is
	// not writable, as dataset.OpenOptions.CacheDir.
	CacheDir string
}

// Writer writes samples into numbered tar shards DIR/000000.tar,
// DIR/000001.tar, …, ShardSize samples each, in the order they are
// written. A shard is written under a temporary name and renamed when
// complete, and its index (see package shardidx) is stored as the reader
// would build it, so that opening the shards scans nothing. Members carry
// a fixed modification time (the Unix epoch), so equal samples give
// byte-identical shards.
type Writer struct {
	dir  string
	opts WriterOptions

	f       *os.File
	buf     *bufio.Writer
	cw      countWriter
	tw      *tar.Writer
	entries []shardidx.Entry
	inShard int // samples of the current shard

	shards  []string
	samples int
}

// countWriter counts the bytes written through it: the offset in the
// shard of what comes next.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// NewWriter makes dir (and its parents) and returns a Writer of shards into
// it.
func NewWriter(dir string, opts WriterOptions) (*Writer, error) {
	if opts.ShardSize == 0 {
		opts.ShardSize = DefaultShardSize
	}
	if opts.ShardSize < 0 {
		return nil, fmt.Errorf("wds: shard size %d: want a positive number of samples", opts.ShardSize)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wds: %w", err)
	}
	return &Writer{dir: dir, opts: opts}, nil
}

// ShardName is the file name of shard n: six digits and ".tar".
func ShardName(n int) string { return fmt.Sprintf("%06d.tar", n) }

// Write appends one sample, its members named key.Ext in the given order.
// key must not contain a dot in its base name (the reader cuts the key
// there) and must differ from the previous sample's key.
func (w *Writer) Write(key string, members []Member) error {
	if key == "" || strings.Contains(filepath.Base(key), ".") {
		return fmt.Errorf("wds: sample key %q: want a name without a dot", key)
	}
	if len(members) == 0 {
		return fmt.Errorf("wds: sample %q has no member", key)
	}
	if w.tw == nil {
		if err := w.startShard(); err != nil {
			return err
		}
	}
	epoch := time.Unix(0, 0)
	for _, m := range members {
		name := key + "." + m.Ext
		h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(m.Data)), ModTime: epoch}
		if err := w.tw.WriteHeader(h); err != nil {
			return w.fail(fmt.Errorf("member %s: %w", name, err))
		}
		// The header is written: the data starts here.
		w.entries = append(w.entries, shardidx.Entry{Name: name, Offset: w.cw.n, Size: int64(len(m.Data))})
		if _, err := w.tw.Write(m.Data); err != nil {
			return w.fail(fmt.Errorf("member %s: %w", name, err))
		}
	}
	w.inShard++
	w.samples++
	if w.inShard == w.opts.ShardSize {
		return w.finishShard()
	}
	return nil
}

func (w *Writer) tmpName() string {
	return filepath.Join(w.dir, "."+ShardName(len(w.shards))+".tmp")
}

func (w *Writer) startShard() error {
	f, err := os.Create(w.tmpName())
	if err != nil {
		return fmt.Errorf("wds: %w", err)
	}
	w.f = f
	w.buf = bufio.NewWriterSize(f, 1<<20)
	w.cw = countWriter{w: w.buf}
	w.tw = tar.NewWriter(&w.cw)
	w.entries = w.entries[:0]
	w.inShard = 0
	return nil
}

// finishShard closes the current shard, renames it to its final name and
// stores its index.
func (w *Writer) finishShard() error {
	if err := w.tw.Close(); err != nil {
		return w.fail(err)
	}
	if err := w.buf.Flush(); err != nil {
		return w.fail(err)
	}
	if err := w.f.Sync(); err != nil {
		return w.fail(err)
	}
	tmp := w.f.Name()
	if err := w.f.Close(); err != nil {
		w.f = nil
		return w.fail(err)
	}
	w.f, w.tw = nil, nil
	final := filepath.Join(w.dir, ShardName(len(w.shards)))
	// An index left by an earlier shard of this name must not be taken
	// for the new one.
	for _, p := range shardidx.Paths(final, w.opts.CacheDir) {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			os.Remove(tmp)
			return fmt.Errorf("wds: stale index: %w", err)
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("wds: %w", err)
	}
	entries := w.entries
	if _, err := shardidx.Load(final, IndexKind, w.opts.CacheDir, func(*os.File, int64) ([]shardidx.Entry, error) {
		return entries, nil
	}); err != nil {
		return fmt.Errorf("wds: index of %s: %w", final, err)
	}
	w.shards = append(w.shards, final)
	return nil
}

// fail drops the shard being written and returns err with context.
func (w *Writer) fail(err error) error {
	w.Abort()
	return fmt.Errorf("wds: shard %s: %w", filepath.Join(w.dir, ShardName(len(w.shards))), err)
}

// Close completes the last shard. The Writer cannot be used afterwards.
func (w *Writer) Close() error {
	if w.tw == nil {
		return nil
	}
	return w.finishShard()
}

// Abort removes the shard being written, keeping the complete ones.
func (w *Writer) Abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
	}
	w.f, w.tw = nil, nil
}

// Shards lists the paths of the complete shards.
func (w *Writer) Shards() []string { return append([]string(nil), w.shards...) }

// Samples is the number of samples written.
func (w *Writer) Samples() int { return w.samples }

// Pattern names the complete shards for Open: "DIR/000000.tar" for one,
// "DIR/{000000..000041}.tar" for several, "" for none.
func (w *Writer) Pattern() string {
	switch n := len(w.shards); n {
	case 0:
		return ""
	case 1:
		return w.shards[0]
	default:
		return filepath.Join(w.dir, fmt.Sprintf("{%06d..%06d}.tar", 0, n-1))
	}
}

package shardidx

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
)

// Entry is one item of a shard.
type Entry struct {
	Name   string
	Offset int64
	Size   int64
	N      int64
}

// Index is the index of one shard.
type Index struct {
	Kind    string // what built it, with a version ("tar/1", "tfrecord/1")
	Size    int64  // the shard's size in bytes
	ModTime int64  // the shard's modification time, ns since the epoch
	Entries []Entry
}

const magic = "infonce-shardidx 1\n"

// MaxEntries bounds the entries of an index Decode accepts.
const MaxEntries = 1 << 26

// ErrFormat wraps every error of Decode.
var ErrFormat = errors.New("shardidx: bad index")

// Encode serialises ix.
func Encode(ix *Index) []byte {
	b := []byte(magic)
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	str(ix.Kind)
	b = binary.AppendVarint(b, ix.Size)
	b = binary.AppendVarint(b, ix.ModTime)
	b = binary.AppendUvarint(b, uint64(len(ix.Entries)))
	for _, e := range ix.Entries {
		str(e.Name)
		b = binary.AppendVarint(b, e.Offset)
		b = binary.AppendVarint(b, e.Size)
		b = binary.AppendVarint(b, e.N)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// Decode parses an index written by Encode.
func Decode(b []byte) (*Index, error) {
	if len(b) < len(magic)+4 || string(b[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: no magic", ErrFormat)
	}
	body := b[:len(b)-4]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, fmt.Errorf("%w: crc mismatch", ErrFormat)
	}
	p := body[len(magic):]
	var err error
	uv := func() uint64 {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			err = fmt.Errorf("%w: bad varint", ErrFormat)
			p = nil
			return 0
		}
		p = p[n:]
		return v
	}
	sv := func() int64 {
		v, n := binary.Varint(p)
		if n <= 0 {
			err = fmt.Errorf("%w: bad varint", ErrFormat)
			p = nil
			return 0
		}
		p = p[n:]
		return v
	}
	str := func() string {
		l := uv()
		if l > uint64(len(p)) {
			err = fmt.Errorf("%w: string of %d bytes beyond the end", ErrFormat, l)
			p = nil
			return ""
		}
		s := string(p[:l])
		p = p[l:]
		return s
	}
	ix := &Index{Kind: str(), Size: sv(), ModTime: sv()}
	n := uv()
	if err != nil {
		return nil, err
	}
	if n > MaxEntries || n > uint64(len(p)) {
		return nil, fmt.Errorf("%w: %d entries in %d bytes", ErrFormat, n, len(p))
	}
	ix.Entries = make([]Entry, 0, n)
	for range n {
		e := Entry{Name: str(), Offset: sv(), Size: sv(), N: sv()}
		if err != nil {
			return nil, err
		}
		ix.Entries = append(ix.Entries, e)
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the entries", ErrFormat, len(p))
	}
	return ix, nil
}

// DefaultCacheDir is os.UserCacheDir()/infonce/shardidx, or the system's
// temporary folder when there is no user cache.
func DefaultCacheDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "infonce", "shardidx")
}

// Paths returns where the index of shard is looked for: beside it, then
// in cacheDir (DefaultCacheDir when empty).
func Paths(shard, cacheDir string) []string {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	abs, err := filepath.Abs(shard)
	if err != nil {
		abs = shard
	}
	sum := sha256.Sum256([]byte(abs))
	return []string{shard + ".idx", filepath.Join(cacheDir, hex.EncodeToString(sum[:12])+"-"+filepath.Base(shard)+".idx")}
}

// Load returns the index of shard of the given kind: a stored one whose
// size and modification time match the shard's, or else a new one made by
// build (given the open shard), which is then stored beside the shard or,
// if that fails, in cacheDir. Failing to store an index is not an error:
// the index is used anyway and the failure is logged.
func Load(shard, kind, cacheDir string, build func(f *os.File, size int64) ([]Entry, error)) (*Index, error) {
	f, err := os.Open(shard)
	if err != nil {
		return nil, fmt.Errorf("shardidx: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("shardidx: %w", err)
	}
	size, mtime := fi.Size(), fi.ModTime().UnixNano()
	paths := Paths(shard, cacheDir)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		ix, err := Decode(b)
		if err != nil {
			slog.Warn("shardidx: stored index ignored", "index", p, "err", err)
			continue
		}
		if ix.Kind == kind && ix.Size == size && ix.ModTime == mtime {
			return ix, nil
		}
	}
	entries, err := build(f, size)
	if err != nil {
		return nil, fmt.Errorf("shardidx: index of %s: %w", shard, err)
	}
	ix := &Index{Kind: kind, Size: size, ModTime: mtime, Entries: entries}
	data := Encode(ix)
	var errs []error
	for _, p := range paths {
		if err := writeAtomic(p, data); err != nil {
			errs = append(errs, err)
			continue
		}
		return ix, nil
	}
	slog.Warn("shardidx: index not stored", "shard", shard, "err", errors.Join(errs...))
	return ix, nil
}

// writeAtomic writes data to path through a temporary file and a rename,
// so that a reader never sees half an index.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".idx-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

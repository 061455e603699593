package checkpoint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/klauspost/compress/zstd"
)

// Checkpoint is a loaded and verified checkpoint.
type Checkpoint struct {
	Dir      string
	Manifest Manifest
	blobs    map[string][]byte
}

// Blob returns the decompressed bytes of the named blob. The slice belongs to
// the Checkpoint; copy it before changing it if the Checkpoint is shared.
func (c *Checkpoint) Blob(name string) ([]byte, error) {
	b, ok := c.blobs[name]
	if !ok {
		return nil, fmt.Errorf("checkpoint %s: blob %q: %w (have %v)", c.Dir, name, ErrNoBlob, c.Names())
	}
	return b, nil
}

// Names returns the names of the blobs, sorted.
func (c *Checkpoint) Names() []string {
	names := make([]string, 0, len(c.blobs))
	for n := range c.blobs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Load reads the checkpoint in dir, verifies the size and SHA-256 of every
// file listed in its manifest, and decompresses the blobs. It returns the
// first problem found; errors.Is(err, ErrCorrupt) holds for damage. Files not
// listed in the manifest are ignored (Verify reports them).
func Load(ctx context.Context, dir string) (*Checkpoint, error) {
	m, blobs, errs := check(ctx, dir, checkOptions{keep: true})
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return &Checkpoint{Dir: dir, Manifest: m, blobs: blobs}, nil
}

// Verify checks the checkpoint in dir as Load does and also reports files
// that the manifest does not list. It returns every problem found, each
// naming the file, or nil when the checkpoint is good.
func Verify(dir string) []error {
	_, _, errs := check(context.Background(), dir, checkOptions{all: true, strict: true})
	return errs
}

// Inspect reads and validates the manifest of dir without reading the blobs.
func Inspect(dir string) (Manifest, error) {
	return readManifest(dir)
}

type checkOptions struct {
	all    bool // report every problem instead of stopping at the first
	strict bool // report files the manifest does not list
	keep   bool // return the decoded blobs
}

func check(ctx context.Context, dir string, o checkOptions) (Manifest, map[string][]byte, []error) {
	m, err := readManifest(dir)
	if err != nil {
		return Manifest{}, nil, []error{err}
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(MaxRawSize),
		zstd.WithDecoderMaxWindow(MaxRawSize),
		zstd.WithDecodeAllCapLimit(true),
	)
	if err != nil {
		return Manifest{}, nil, []error{fmt.Errorf("checkpoint %s: zstd decoder: %w", dir, err)}
	}
	defer dec.Close()

	var errs []error
	var blobs map[string][]byte
	if o.keep {
		blobs = make(map[string][]byte, len(m.Files))
	}
	for _, f := range m.Files {
		if err := ctx.Err(); err != nil {
			return Manifest{}, nil, append(errs, fmt.Errorf("checkpoint %s: %w", dir, err))
		}
		raw, err := readBlob(dec, dir, f)
		if err != nil {
			errs = append(errs, &FileError{Dir: dir, File: f.Name, Err: err})
			if !o.all {
				return Manifest{}, nil, errs
			}
			continue
		}
		if o.keep {
			name, _ := blobNameOf(f.Name)
			blobs[name] = raw
		}
	}
	if o.strict {
		errs = append(errs, unexpectedFiles(dir, m)...)
	}
	if len(errs) > 0 {
		return Manifest{}, nil, errs
	}
	return m, blobs, nil
}

// readBlob reads one file, checks its size and checksum against the
// manifest, then decodes it into a buffer of exactly the declared raw size
// (bounded by MaxRawSize when the manifest was validated).
func readBlob(dec *zstd.Decoder, dir string, f File) ([]byte, error) {
	fh, err := os.Open(filepath.Join(dir, f.Name))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrMissingFile
		}
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file", ErrMissingFile)
	}
	if st.Size() != f.Size {
		return nil, fmt.Errorf("%w: %d bytes on disk, manifest says %d", ErrSize, st.Size(), f.Size)
	}
	data := make([]byte, f.Size)
	if _, err := io.ReadFull(fh, data); err != nil {
		return nil, fmt.Errorf("%w: reading %d bytes: %v", ErrSize, f.Size, err)
	}
	if n, _ := fh.Read(make([]byte, 1)); n != 0 {
		return nil, fmt.Errorf("%w: file grew beyond %d bytes while reading", ErrSize, f.Size)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != f.SHA256 {
		return nil, fmt.Errorf("%w: sha256 %s, manifest says %s", ErrChecksum, got, f.SHA256)
	}
	if f.Encoding != EncodingZstd {
		return nil, fmt.Errorf("%w: unsupported encoding %q", ErrBadManifest, f.Encoding)
	}
	raw, err := dec.DecodeAll(data, make([]byte, 0, f.RawSize))
	if err != nil {
		return nil, fmt.Errorf("%w: zstd: %v", ErrDecode, err)
	}
	if int64(len(raw)) != f.RawSize {
		return nil, fmt.Errorf("%w: decodes to %d bytes, manifest says %d", ErrDecode, len(raw), f.RawSize)
	}
	return raw, nil
}

// unexpectedFiles reports entries of dir that are neither the manifest nor
// listed in it.
func unexpectedFiles(dir string, m Manifest) []error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return []error{fmt.Errorf("checkpoint %s: %w", dir, err)}
	}
	listed := make(map[string]bool, len(m.Files)+1)
	listed[ManifestName] = true
	for _, f := range m.Files {
		listed[f.Name] = true
	}
	var errs []error
	for _, e := range entries {
		if !listed[e.Name()] {
			errs = append(errs, &FileError{Dir: dir, File: e.Name(), Err: ErrUnexpectedFile})
		}
	}
	return errs
}

// Open loads the checkpoint at path: path is one checkpoint directory (it
// holds a manifest), or a directory of checkpoints whose newest good one is
// taken, with LoadLatest's fallback.
func Open(ctx context.Context, path string) (*Checkpoint, error) {
	if _, err := os.Stat(filepath.Join(path, ManifestName)); err == nil {
		return Load(ctx, path)
	}
	return (&Store{Root: path}).LoadLatest(ctx)
}

// Locate names the checkpoint directory that path means: path itself when
// it holds a manifest; else the newest checkpoint of the directory of
// checkpoints path is (by step, as List orders them), or of path's
// "checkpoints" folder when path is a run directory. It does not check the
// checkpoint; Load and Verify do.
func Locate(path string) (string, error) {
	if _, err := os.Stat(filepath.Join(path, ManifestName)); err == nil {
		return path, nil
	}
	for _, root := range []string{path, filepath.Join(path, "checkpoints")} {
		dirs, err := (&Store{Root: root}).List()
		if err != nil {
			return "", err
		}
		if len(dirs) > 0 {
			return dirs[0], nil
		}
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	return "", fmt.Errorf("checkpoint: %s holds no checkpoint: looked for %s, step-* directories and checkpoints/step-*", path, ManifestName)
}

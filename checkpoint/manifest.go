package checkpoint

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// FormatVersion is the version of the on-disk format written by this package.
const FormatVersion = 1

// ManifestName is the name of the manifest file inside a checkpoint directory.
const ManifestName = "manifest.json"

// EncodingZstd is the only blob encoding of format version 1.
const EncodingZstd = "zstd"

// Decoding limits, checked before anything is allocated.
const (
	// MaxManifestBytes bounds the size of manifest.json.
	MaxManifestBytes = 4 << 20
	// MaxRawSize bounds the decompressed size of one blob.
	MaxRawSize = 4 << 30
	// MaxBlobNameLen bounds the length of a blob name.
	MaxBlobNameLen = 128
	// maxFileSize bounds the on-disk size of one blob: zstd never expands
	// incompressible data by more than a small per-block overhead.
	maxFileSize = MaxRawSize + MaxRawSize/1024 + 1<<16
)

// Manifest describes one checkpoint. It is stored as manifest.json.
type Manifest struct {
	FormatVersion int    `json:"format_version"`
	Step          int64  `json:"step"`           // global steps completed
	Epoch         int    `json:"epoch"`          // epoch of the next step
	SamplerCursor int64  `json:"sampler_cursor"` // the next global step to sample
	Generation    uint64 `json:"generation"`     // cluster generation that wrote it
	// RunID names the run that wrote the checkpoint ("" for none): Save
	// refuses to add a checkpoint of one run to a root that holds another's.
	RunID       string            `json:"run_id,omitempty"`
	CreatedUnix float64           `json:"created_unix"` // seconds since 1970; Save fills it when zero
	Config      json.RawMessage   `json:"config,omitempty"`
	RNG         map[string]uint64 `json:"rng,omitempty"`
	Extra       map[string]string `json:"extra,omitempty"`
	Files       []File            `json:"files"` // filled by Save
	// Checksum is the lowercase hex SHA-256 of the manifest's canonical
	// encoding (encoding/json.Marshal, compact) with Checksum empty. Save
	// fills it; decoding refuses a manifest whose fields do not match it, so
	// a damaged step, cursor, RNG state or config is never taken for good.
	Checksum string `json:"checksum"`
}

// File describes one blob file of a checkpoint.
type File struct {
	Name     string `json:"name"`     // file name inside the directory, e.g. "params.zst"
	Size     int64  `json:"size"`     // bytes on disk
	RawSize  int64  `json:"raw_size"` // bytes after decoding
	SHA256   string `json:"sha256"`   // lowercase hex SHA-256 of the on-disk bytes
	Encoding string `json:"encoding"` // "zstd"
}

// Errors. Every verification failure wraps ErrCorrupt, so
// errors.Is(err, ErrCorrupt) tells a damaged checkpoint from an I/O or usage
// error.
var (
	ErrNoCheckpoint = errors.New("no usable checkpoint")
	ErrCorrupt      = errors.New("checkpoint corrupt")
	ErrBadName      = errors.New("invalid blob name")
	ErrNoBlob       = errors.New("no such blob")
	ErrExists       = errors.New("checkpoint already exists")
	// ErrOtherRun: the root holds checkpoints that another run wrote.
	ErrOtherRun = errors.New("checkpoints of another run")

	ErrMissingManifest = fmt.Errorf("%w: manifest missing", ErrCorrupt)
	ErrBadManifest     = fmt.Errorf("%w: bad manifest", ErrCorrupt)
	ErrVersion         = fmt.Errorf("%w: unsupported format version", ErrCorrupt)
	ErrMissingFile     = fmt.Errorf("%w: file missing", ErrCorrupt)
	ErrSize            = fmt.Errorf("%w: size mismatch", ErrCorrupt)
	ErrChecksum        = fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	ErrDecode          = fmt.Errorf("%w: undecodable blob", ErrCorrupt)
	ErrUnexpectedFile  = fmt.Errorf("%w: unexpected file", ErrCorrupt)
)

// FileError names the checkpoint directory and the file a problem was found in.
type FileError struct {
	Dir  string
	File string
	Err  error
}

func (e *FileError) Error() string {
	return fmt.Sprintf("checkpoint %s: %s: %v", e.Dir, e.File, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// ValidBlobName reports whether name may be used as a blob name: 1 to
// MaxBlobNameLen characters of [a-z0-9_.-], starting with a letter or digit,
// and not "manifest.json". Such a name can never leave the checkpoint
// directory or collide with the manifest.
func ValidBlobName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrBadName)
	}
	if len(name) > MaxBlobNameLen {
		return fmt.Errorf("%w: %d characters, at most %d", ErrBadName, len(name), MaxBlobNameLen)
	}
	if name == ManifestName {
		return fmt.Errorf("%w: %q is reserved", ErrBadName, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '.' || c == '-') && i > 0:
		default:
			return fmt.Errorf("%w: %q: only [a-z0-9_.-] allowed, starting with [a-z0-9]", ErrBadName, name)
		}
	}
	return nil
}

// blobFileName is the on-disk name of blob name under encoding zstd.
func blobFileName(name string) string { return name + ".zst" }

// blobNameOf is the inverse of blobFileName.
func blobNameOf(file string) (string, bool) {
	name, ok := strings.CutSuffix(file, ".zst")
	return name, ok && ValidBlobName(name) == nil
}

// DecodeManifest parses and validates a manifest. It refuses input over
// MaxManifestBytes, unsupported versions, invalid or duplicate file names,
// and sizes outside the limits.
func DecodeManifest(b []byte) (Manifest, error) {
	var m Manifest
	if len(b) > MaxManifestBytes {
		return m, fmt.Errorf("%w: %d bytes, limit %d", ErrBadManifest, len(b), MaxManifestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", ErrBadManifest, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Manifest{}, fmt.Errorf("%w: trailing data after the JSON object", ErrBadManifest)
	}
	if err := m.validate(); err != nil {
		return Manifest{}, err
	}
	sum, err := m.canonicalSum()
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", ErrBadManifest, err)
	}
	if m.Checksum != sum {
		return Manifest{}, fmt.Errorf("%w: manifest checksum %q, its fields hash to %s", ErrChecksum, m.Checksum, sum)
	}
	return m, nil
}

// canonicalSum is the SHA-256 of the compact JSON encoding of m with
// Checksum empty. The encoding is canonical: struct fields in order, map keys
// sorted, Config compacted, numbers in their shortest exact form.
func (m Manifest) canonicalSum() (string, error) {
	m.Checksum = ""
	b, err := json.Marshal(&m)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

func (m *Manifest) validate() error {
	if m.FormatVersion != FormatVersion {
		return fmt.Errorf("%w: %d (this build reads %d)", ErrVersion, m.FormatVersion, FormatVersion)
	}
	if m.Step < 0 {
		return fmt.Errorf("%w: negative step %d", ErrBadManifest, m.Step)
	}
	if m.Files == nil {
		return fmt.Errorf("%w: no file list", ErrBadManifest)
	}
	seen := make(map[string]bool, len(m.Files))
	for i, f := range m.Files {
		if _, ok := blobNameOf(f.Name); !ok {
			return fmt.Errorf("%w: files[%d]: invalid file name %q", ErrBadManifest, i, f.Name)
		}
		if seen[f.Name] {
			return fmt.Errorf("%w: files[%d]: duplicate file %q", ErrBadManifest, i, f.Name)
		}
		seen[f.Name] = true
		if f.Encoding != EncodingZstd {
			return fmt.Errorf("%w: %s: unsupported encoding %q", ErrBadManifest, f.Name, f.Encoding)
		}
		if f.Size < 0 || f.Size > maxFileSize {
			return fmt.Errorf("%w: %s: size %d out of range [0, %d]", ErrBadManifest, f.Name, f.Size, int64(maxFileSize))
		}
		if f.RawSize < 0 || f.RawSize > MaxRawSize {
			return fmt.Errorf("%w: %s: raw size %d out of range [0, %d]", ErrBadManifest, f.Name, f.RawSize, int64(MaxRawSize))
		}
		if len(f.SHA256) != 64 || strings.ToLower(f.SHA256) != f.SHA256 {
			return fmt.Errorf("%w: %s: sha256 %q is not 64 lowercase hex digits", ErrBadManifest, f.Name, f.SHA256)
		}
		if _, err := hex.DecodeString(f.SHA256); err != nil {
			return fmt.Errorf("%w: %s: sha256 %q is not 64 lowercase hex digits", ErrBadManifest, f.Name, f.SHA256)
		}
	}
	return nil
}

// readManifest reads and validates dir/manifest.json within the size limit.
func readManifest(dir string) (Manifest, error) {
	path := filepath.Join(dir, ManifestName)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Manifest{}, &FileError{Dir: dir, File: ManifestName, Err: ErrMissingManifest}
		}
		return Manifest{}, &FileError{Dir: dir, File: ManifestName, Err: err}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxManifestBytes+1))
	if err != nil {
		return Manifest{}, &FileError{Dir: dir, File: ManifestName, Err: err}
	}
	m, err := DecodeManifest(b)
	if err != nil {
		return Manifest{}, &FileError{Dir: dir, File: ManifestName, Err: err}
	}
	if step, ok := parseStepDir(filepath.Base(dir)); ok && step != m.Step {
		return Manifest{}, &FileError{Dir: dir, File: ManifestName,
			Err: fmt.Errorf("%w: step %d does not match the directory name", ErrBadManifest, m.Step)}
	}
	return m, nil
}

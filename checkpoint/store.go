package checkpoint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
)

// DefaultKeep is the number of checkpoints Save retains when Store.Keep is 0.
const DefaultKeep = 3

// DefaultLockWait is how long Save and Clear wait for the root's lock when
// Store.LockWait is 0: far longer than any save of this process holds it.
const DefaultLockWait = 2 * time.Minute

// ErrLocked reports a root whose lock another writer held for longer than
// the Store's LockWait.
var ErrLocked = errors.New("locked by another writer")

// lock takes the root's lock, waiting at most LockWait.
func (s *Store) lock(ctx context.Context) (func(), error) {
	wait := s.LockWait
	if wait <= 0 {
		wait = DefaultLockWait
	}
	lctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	unlock, err := lockRoot(lctx, s.Root)
	if err != nil && ctx.Err() == nil && lctx.Err() != nil {
		return nil, fmt.Errorf("%s/%s held for %v: %w (is another run writing checkpoints there?)", s.Root, lockName, wait, ErrLocked)
	}
	return unlock, err
}

const (
	stepPrefix = "step-"
	tmpPrefix  = ".tmp-"
	lockName   = ".lock"
)

// Blob is one named buffer of raw bytes; Save compresses it into NAME.zst.
type Blob struct {
	Name string
	Data []byte
}

// Store writes and reads checkpoints under one root directory. The zero
// value of every field but Root is usable. A Store must not be copied after
// first use; one Store may be used from several goroutines.
type Store struct {
	Root string
	// Keep is how many checkpoints (highest steps) Save retains; 0 means
	// DefaultKeep, a negative value keeps all. The checkpoint just written is
	// never removed.
	Keep int
	// Logger receives warnings about skipped checkpoints and pruning;
	// nil means slog.Default().
	Logger *slog.Logger
	// Level is the zstd level; the zero value means zstd.SpeedFastest.
	Level zstd.EncoderLevel
	// LockWait bounds the wait for the root's lock, held by another
	// writer (0: DefaultLockWait); Save and Clear then fail with ErrLocked.
	LockWait time.Duration

	mu       sync.Mutex // serialises Save within the process
	enc      *zstd.Encoder
	encLevel zstd.EncoderLevel
}

func (s *Store) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Store) keep() int {
	if s.Keep == 0 {
		return DefaultKeep
	}
	return s.Keep
}

// stepDirName is the directory name of the checkpoint of step.
func stepDirName(step int64) string { return fmt.Sprintf("%s%012d", stepPrefix, step) }

// parseStepDir returns the step of a canonical checkpoint directory name.
func parseStepDir(name string) (int64, bool) {
	digits, ok := strings.CutPrefix(name, stepPrefix)
	if !ok || len(digits) < 12 || len(digits) > 19 {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	step, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || stepDirName(step) != name {
		return 0, false
	}
	return step, true
}

// encoder returns the Store's zstd encoder for the configured level. The
// caller holds s.mu.
func (s *Store) encoder() (*zstd.Encoder, error) {
	level := s.Level
	if level == 0 {
		level = zstd.SpeedFastest
	}
	if s.enc != nil && s.encLevel == level {
		return s.enc, nil
	}
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
	)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: zstd encoder: %w", err)
	}
	if s.enc != nil {
		s.enc.Close()
	}
	s.enc, s.encLevel = enc, level
	return enc, nil
}

// Save writes a checkpoint of m and blobs as ROOT/step-<m.Step>/ and returns
// its path. It writes into a temporary directory, fsyncs every file, writes
// and fsyncs the manifest last, fsyncs the directory, renames it to its final
// name in one step and fsyncs ROOT; then it removes leftovers of interrupted
// saves and prunes old checkpoints down to Keep.
//
// Save sets m.FormatVersion and m.Files, and m.CreatedUnix when it is zero.
// Blob names must satisfy ValidBlobName and be distinct. If a checkpoint of
// the same step exists and verifies, Save fails with ErrExists; a damaged one
// is replaced. When m.RunID is set and ROOT holds a checkpoint whose
// manifest names another run, Save fails with ErrOtherRun and writes
// nothing: one run's step is never taken for another's, and pruning never
// removes one run's checkpoints to make room for another's.
func (s *Store) Save(ctx context.Context, m Manifest, blobs []Blob) (dir string, err error) {
	if s.Root == "" {
		return "", errors.New("checkpoint: Store.Root is empty")
	}
	if m.Step < 0 {
		return "", fmt.Errorf("checkpoint: negative step %d", m.Step)
	}
	seen := make(map[string]bool, len(blobs))
	for _, b := range blobs {
		if err := ValidBlobName(b.Name); err != nil {
			return "", fmt.Errorf("checkpoint: save step %d: %w", m.Step, err)
		}
		if seen[b.Name] {
			return "", fmt.Errorf("checkpoint: save step %d: %w: duplicate %q", m.Step, ErrBadName, b.Name)
		}
		seen[b.Name] = true
		if int64(len(b.Data)) > MaxRawSize {
			return "", fmt.Errorf("checkpoint: save step %d: blob %q is %d bytes, limit %d", m.Step, b.Name, len(b.Data), int64(MaxRawSize))
		}
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("checkpoint: save step %d: %w", m.Step, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(s.Root, 0o755); err != nil {
		return "", fmt.Errorf("checkpoint: save step %d: %w", m.Step, err)
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return "", fmt.Errorf("checkpoint: save step %d: lock %s: %w", m.Step, s.Root, err)
	}
	defer unlock()
	s.removeLeftovers()
	if err := s.checkRun(m.RunID); err != nil {
		return "", fmt.Errorf("checkpoint: save step %d: %w", m.Step, err)
	}

	name := stepDirName(m.Step)
	final := filepath.Join(s.Root, name)
	if _, err := os.Lstat(final); err == nil {
		_, _, errs := check(ctx, final, checkOptions{})
		if len(errs) == 0 {
			return "", fmt.Errorf("checkpoint: save step %d: %s: %w", m.Step, final, ErrExists)
		}
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("checkpoint: save step %d: %w", m.Step, err)
		}
		if !errors.Is(errs[0], ErrCorrupt) {
			return "", fmt.Errorf("checkpoint: save step %d: %s exists and cannot be checked: %w", m.Step, final, errs[0])
		}
		s.logger().Warn("checkpoint: replacing damaged checkpoint", "dir", final, "err", errs[0])
		if err := s.remove(final); err != nil {
			return "", fmt.Errorf("checkpoint: save step %d: replace damaged %s: %w", m.Step, final, err)
		}
	}

	tmp, err := os.MkdirTemp(s.Root, tmpPrefix+name+"-")
	if err != nil {
		return "", fmt.Errorf("checkpoint: save step %d: %w", m.Step, err)
	}
	committed := false
	defer func() {
		if !committed {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp creates 0700
		return "", fmt.Errorf("checkpoint: save step %d: %w", m.Step, err)
	}

	enc, err := s.encoder()
	if err != nil {
		return "", err
	}
	files, err := writeBlobs(ctx, enc, tmp, blobs)
	if err != nil {
		return "", fmt.Errorf("checkpoint: save step %d: %w", m.Step, err)
	}

	m.FormatVersion = FormatVersion
	m.Files = files
	if m.CreatedUnix == 0 {
		m.CreatedUnix = float64(time.Now().UnixNano()) / 1e9
	}
	if err := m.validate(); err != nil {
		return "", fmt.Errorf("checkpoint: save step %d: %w", m.Step, err)
	}
	if m.Checksum, err = m.canonicalSum(); err != nil {
		return "", fmt.Errorf("checkpoint: save step %d: encode manifest (is Config valid JSON?): %w", m.Step, err)
	}
	mb, err := json.MarshalIndent(&m, "", "  ")
	if err != nil {
		return "", fmt.Errorf("checkpoint: save step %d: encode manifest (is Config valid JSON?): %w", m.Step, err)
	}
	if len(mb) > MaxManifestBytes {
		return "", fmt.Errorf("checkpoint: save step %d: manifest is %d bytes, limit %d", m.Step, len(mb), MaxManifestBytes)
	}
	if err := writeFileSync(filepath.Join(tmp, ManifestName), append(mb, '\n')); err != nil {
		return "", fmt.Errorf("checkpoint: save step %d: %w", m.Step, err)
	}
	if err := syncDir(tmp); err != nil {
		return "", fmt.Errorf("checkpoint: save step %d: %w", m.Step, err)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("checkpoint: save step %d: %w", m.Step, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("checkpoint: save step %d: commit: %w", m.Step, err)
	}
	committed = true
	if err := syncDir(s.Root); err != nil {
		return final, fmt.Errorf("checkpoint: save step %d: renamed to %s but fsync of the root failed: %w", m.Step, final, err)
	}
	s.prune(final)
	return final, nil
}

// checkRun returns an error wrapping ErrOtherRun when Root holds a
// checkpoint whose manifest names a run other than id. A checkpoint without
// a run id (written before run ids existed) or with an unreadable manifest
// is no one's. The caller holds the root lock.
func (s *Store) checkRun(id string) error {
	if id == "" {
		return nil
	}
	dirs, err := s.List()
	if err != nil {
		return err
	}
	for _, d := range dirs {
		m, err := readManifest(d)
		if err != nil || m.RunID == "" || m.RunID == id {
			continue
		}
		return fmt.Errorf("%s was written by run %s, this is run %s: %w", d, m.RunID, id, ErrOtherRun)
	}
	return nil
}

// Runs returns the run ids named by the checkpoints under Root, in the
// order of List (highest step first), each once; checkpoints without a run
// id or with an unreadable manifest count as "".
func (s *Store) Runs() ([]string, error) {
	dirs, err := s.List()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, d := range dirs {
		m, _ := readManifest(d)
		if !slices.Contains(ids, m.RunID) {
			ids = append(ids, m.RunID)
		}
	}
	return ids, nil
}

// Clear removes every checkpoint under Root and the leftovers of
// interrupted saves, holding the root lock (so that it never removes a
// checkpoint while another process writes one). It returns how many
// checkpoints it removed.
func (s *Store) Clear(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := os.Stat(s.Root); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return 0, fmt.Errorf("checkpoint: clear: lock %s: %w", s.Root, err)
	}
	defer unlock()
	s.removeLeftovers()
	dirs, err := s.List()
	if err != nil {
		return 0, err
	}
	for i, d := range dirs {
		if err := s.remove(d); err != nil {
			return i, fmt.Errorf("checkpoint: clear %s: %w", d, err)
		}
	}
	return len(dirs), nil
}

// writeBlobs compresses and writes the blobs into dir in parallel, fsyncing
// each file, and returns their manifest entries in the order of blobs.
// Compression runs on at most GOMAXPROCS blobs at once; writes and fsyncs,
// which wait on the disk, overlap freely.
func writeBlobs(ctx context.Context, enc *zstd.Encoder, dir string, blobs []Blob) ([]File, error) {
	files := make([]File, len(blobs))
	errs := make([]error, len(blobs))
	cpu := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, b := range blobs {
		wg.Go(func() {
			cpu <- struct{}{}
			if err := ctx.Err(); err != nil {
				<-cpu
				errs[i] = err
				return
			}
			// Incompressible data (typical of float weights) is stored in raw
			// blocks, slightly larger than the input: size the buffer for it.
			comp := enc.EncodeAll(b.Data, make([]byte, 0, len(b.Data)+len(b.Data)/1024+64))
			sum := sha256.Sum256(comp)
			<-cpu
			f := File{
				Name:     blobFileName(b.Name),
				Size:     int64(len(comp)),
				RawSize:  int64(len(b.Data)),
				SHA256:   hex.EncodeToString(sum[:]),
				Encoding: EncodingZstd,
			}
			if err := writeFileSync(filepath.Join(dir, f.Name), comp); err != nil {
				errs[i] = err
				return
			}
			files[i] = f
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return files, nil
}

// writeFileSync creates path (which must not exist), writes data and fsyncs it.
func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// syncDir fsyncs a directory so that the entries created in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// remove deletes a checkpoint directory by first renaming it to a temporary
// name, so that a deletion cut short never leaves a partial directory under a
// final name. The caller holds the root lock.
func (s *Store) remove(dir string) error {
	trash := filepath.Join(s.Root, fmt.Sprintf("%sdelete-%s-%d", tmpPrefix, filepath.Base(dir), time.Now().UnixNano()))
	if err := os.Rename(dir, trash); err != nil {
		return err
	}
	if err := syncDir(s.Root); err != nil {
		return err
	}
	return os.RemoveAll(trash)
}

// removeLeftovers deletes .tmp-* directories left by interrupted saves and
// deletions. The caller holds the root lock, so none of them is in use.
func (s *Store) removeLeftovers() {
	entries, err := os.ReadDir(s.Root)
	if err != nil {
		s.logger().Warn("checkpoint: cannot list root for leftovers", "root", s.Root, "err", err)
		return
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), tmpPrefix) {
			path := filepath.Join(s.Root, e.Name())
			if err := os.RemoveAll(path); err != nil {
				s.logger().Warn("checkpoint: cannot remove leftover of an interrupted save", "dir", path, "err", err)
			}
		}
	}
}

// prune removes checkpoints beyond the Keep highest steps, never the one just
// written. Failures are logged: the new checkpoint is already committed.
func (s *Store) prune(justWritten string) {
	keep := s.keep()
	if keep < 0 {
		return
	}
	dirs, err := s.List()
	if err != nil {
		s.logger().Warn("checkpoint: cannot list checkpoints for pruning", "root", s.Root, "err", err)
		return
	}
	for i, d := range dirs {
		if i < keep || d == justWritten {
			continue
		}
		if err := s.remove(d); err != nil {
			s.logger().Warn("checkpoint: cannot prune old checkpoint", "dir", d, "err", err)
		}
	}
}

// List returns the checkpoint directories under Root, highest step first. It
// looks at names only: canonical step-NNNNNNNNNNNN directories. Temporary
// directories of interrupted saves and anything else are ignored. A missing
// Root holds no checkpoints.
func (s *Store) List() ([]string, error) {
	entries, err := os.ReadDir(s.Root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("checkpoint: list %s: %w", s.Root, err)
	}
	type stepDir struct {
		step int64
		path string
	}
	var found []stepDir
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if step, ok := parseStepDir(e.Name()); ok {
			found = append(found, stepDir{step, filepath.Join(s.Root, e.Name())})
		}
	}
	slices.SortFunc(found, func(a, b stepDir) int { return -cmpInt64(a.step, b.step) })
	dirs := make([]string, len(found))
	for i, f := range found {
		dirs[i] = f.path
	}
	return dirs, nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// LoadLatest loads the checkpoint of the highest step that verifies. Each one
// that fails is logged as a warning naming the directory and the problem, and
// the previous one is tried. It returns an error wrapping ErrNoCheckpoint when
// none verifies.
func (s *Store) LoadLatest(ctx context.Context) (*Checkpoint, error) {
	dirs, err := s.List()
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		c, err := Load(ctx, d)
		if err == nil {
			return c, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("checkpoint: load latest under %s: %w", s.Root, ctxErr)
		}
		s.logger().Warn("checkpoint: skipping checkpoint that does not verify, falling back to the previous one", "dir", d, "err", err)
	}
	return nil, fmt.Errorf("checkpoint: %w under %s (%d candidates)", ErrNoCheckpoint, s.Root, len(dirs))
}

// Resolve turns a user's checkpoint spec into a directory: "latest" is the
// directory LoadLatest would load (fully verified); otherwise spec is a path
// to an existing directory, a directory name under Root, or a step number.
func (s *Store) Resolve(spec string) (string, error) {
	if spec == "latest" {
		dirs, err := s.List()
		if err != nil {
			return "", err
		}
		for _, d := range dirs {
			_, _, errs := check(context.Background(), d, checkOptions{})
			if len(errs) == 0 {
				return d, nil
			}
			s.logger().Warn("checkpoint: skipping checkpoint that does not verify", "dir", d, "err", errs[0])
		}
		return "", fmt.Errorf("checkpoint: resolve %q: %w under %s", spec, ErrNoCheckpoint, s.Root)
	}
	if spec == "" {
		return "", errors.New("checkpoint: resolve: empty spec (want \"latest\", a directory or a step)")
	}
	candidates := []string{filepath.Clean(spec)}
	if s.Root != "" && !filepath.IsAbs(spec) {
		candidates = append(candidates, filepath.Join(s.Root, spec))
		if step, err := strconv.ParseInt(spec, 10, 64); err == nil && step >= 0 {
			candidates = append(candidates, filepath.Join(s.Root, stepDirName(step)))
		}
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && st.IsDir() {
			return c, nil
		}
	}
	return "", fmt.Errorf("checkpoint: resolve %q: no such checkpoint directory (tried %s)", spec, strings.Join(candidates, ", "))
}

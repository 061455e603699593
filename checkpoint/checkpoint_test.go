package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuffer is a goroutine-safe sink for captured slog output.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newStore(t testing.TB, keep int) (*Store, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	return &Store{
		Root:   filepath.Join(t.TempDir(), "ckpt"),
		Keep:   keep,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, logs
}

// testBlobs returns deterministic blobs for a step: parameters that look like
// trained weights, an Adam moment and a tiny queue.
func testBlobs(step int64, n int) []Blob {
	r := rand.New(rand.NewPCG(uint64(step), 0x5eed))
	params := make([]float32, n)
	m := make([]float32, n)
	for i := range params {
		params[i] = float32(r.NormFloat64() * 0.02)
		m[i] = float32(r.NormFloat64() * 1e-4)
	}
	return []Blob{
		{Name: "params", Data: Float32Bytes(params)},
		{Name: "adam_m", Data: Float32Bytes(m)},
		{Name: "moco_queue", Data: Float64Bytes([]float64{float64(step), -0.5, math.Inf(1)})},
	}
}

func testManifest(step int64) Manifest {
	return Manifest{
		Step:          step,
		Epoch:         int(step / 10),
		SamplerCursor: step + 1,
		Generation:    7,
		CreatedUnix:   1.7e9 + float64(step),
		Config:        json.RawMessage(`{"batch":256,"lr":0.001}`),
		RNG:           map[string]uint64{"seed": 42, "sampler": uint64(step) * 3},
		Extra:         map[string]string{"objective": "clip"},
	}
}

func mustSave(t testing.TB, s *Store, step int64) string {
	t.Helper()
	dir, err := s.Save(context.Background(), testManifest(step), testBlobs(step, 1000))
	if err != nil {
		t.Fatalf("Save(step %d): %v", step, err)
	}
	return dir
}

func checkBlobs(t testing.TB, c *Checkpoint, step int64) {
	t.Helper()
	for _, want := range testBlobs(step, 1000) {
		got, err := c.Blob(want.Name)
		if err != nil {
			t.Fatalf("Blob(%q): %v", want.Name, err)
		}
		if !bytes.Equal(got, want.Data) {
			t.Fatalf("Blob(%q) of %s differs from what step %d saved", want.Name, c.Dir, step)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	s, _ := newStore(t, 0)
	ctx := context.Background()
	want := testManifest(123)
	dir, err := s.Save(ctx, want, testBlobs(123, 5000))
	if err != nil {
		t.Fatal(err)
	}
	if got := filepath.Base(dir); got != "step-000000000123" {
		t.Errorf("dir name %q, want step-000000000123", got)
	}
	if errs := Verify(dir); errs != nil {
		t.Fatalf("Verify of a fresh checkpoint: %v", errs)
	}
	c, err := Load(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	got := c.Manifest
	if got.FormatVersion != FormatVersion || got.Step != 123 || got.Epoch != want.Epoch ||
		got.SamplerCursor != want.SamplerCursor || got.Generation != want.Generation ||
		got.CreatedUnix != want.CreatedUnix || compactJSON(t, got.Config) != compactJSON(t, want.Config) ||
		!mapsEqual(got.RNG, want.RNG) || !mapsEqual(got.Extra, want.Extra) {
		t.Errorf("manifest round trip: got %+v, want %+v", got, want)
	}
	if len(got.Files) != 3 {
		t.Fatalf("manifest lists %d files, want 3: %+v", len(got.Files), got.Files)
	}
	for _, b := range testBlobs(123, 5000) {
		data, err := c.Blob(b.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, b.Data) {
			t.Errorf("blob %q differs after round trip", b.Name)
		}
	}
	if names := c.Names(); !slices.Equal(names, []string{"adam_m", "moco_queue", "params"}) {
		t.Errorf("Names() = %v", names)
	}
	if _, err := c.Blob("adam_v"); !errors.Is(err, ErrNoBlob) {
		t.Errorf("Blob of a missing name: %v, want ErrNoBlob", err)
	}
	for _, f := range got.Files {
		st, err := os.Stat(filepath.Join(dir, f.Name))
		if err != nil || st.Size() != f.Size || f.Encoding != EncodingZstd {
			t.Errorf("file %+v: stat %v %v", f, st, err)
		}
	}
	m, err := Inspect(dir)
	if err != nil || m.Step != 123 {
		t.Errorf("Inspect: %+v %v", m, err)
	}
	// Save fills CreatedUnix when zero; empty blobs and no config are fine.
	m0 := Manifest{Step: 124}
	dir, err = s.Save(ctx, m0, []Blob{{Name: "empty", Data: nil}})
	if err != nil {
		t.Fatal(err)
	}
	c, err = Load(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Manifest.CreatedUnix == 0 {
		t.Error("CreatedUnix not filled")
	}
	if b, err := c.Blob("empty"); err != nil || len(b) != 0 {
		t.Errorf("empty blob: %v %v", b, err)
	}
}

func compactJSON(t testing.TB, b []byte) string {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatalf("config %q: %v", b, err)
	}
	return out.String()
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestFloatBytes(t *testing.T) {
	// Little-endian by definition, whatever the machine.
	if got := Float32Bytes([]float32{1}); !bytes.Equal(got, []byte{0, 0, 0x80, 0x3f}) {
		t.Errorf("Float32Bytes(1) = % x", got)
	}
	if got := Float64Bytes([]float64{1}); !bytes.Equal(got, []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f}) {
		t.Errorf("Float64Bytes(1) = % x", got)
	}
	x32 := []float32{0, float32(math.Copysign(0, -1)), 1.5, -3e-38, math.MaxFloat32, float32(math.Inf(-1)), float32(math.NaN())}
	y32, err := BytesFloat32(Float32Bytes(x32))
	if err != nil {
		t.Fatal(err)
	}
	for i := range x32 {
		if math.Float32bits(x32[i]) != math.Float32bits(y32[i]) {
			t.Errorf("float32[%d]: %v -> %v", i, x32[i], y32[i])
		}
	}
	x64 := []float64{0, math.Copysign(0, -1), 1.5, 5e-324, math.MaxFloat64, math.Inf(1), math.NaN()}
	y64, err := BytesFloat64(Float64Bytes(x64))
	if err != nil {
		t.Fatal(err)
	}
	for i := range x64 {
		if math.Float64bits(x64[i]) != math.Float64bits(y64[i]) {
			t.Errorf("float64[%d]: %v -> %v", i, x64[i], y64[i])
		}
	}
	for _, n := range []int{1, 2, 3, 5, 7} {
		if _, err := BytesFloat32(make([]byte, n)); err == nil && n%4 != 0 {
			t.Errorf("BytesFloat32 of %d bytes: no error", n)
		}
		if _, err := BytesFloat64(make([]byte, n)); err == nil {
			t.Errorf("BytesFloat64 of %d bytes: no error", n)
		}
	}
}

func stepsOf(t testing.TB, dirs []string) []int64 {
	t.Helper()
	steps := make([]int64, len(dirs))
	for i, d := range dirs {
		step, ok := parseStepDir(filepath.Base(d))
		if !ok {
			t.Fatalf("List returned %q", d)
		}
		steps[i] = step
	}
	return steps
}

func TestRetention(t *testing.T) {
	tests := []struct {
		keep  int
		saves []int64
		want  []int64
	}{
		{keep: 0, saves: []int64{1, 2, 3, 4, 5}, want: []int64{5, 4, 3}},
		{keep: 2, saves: []int64{1, 2, 3, 4, 5}, want: []int64{5, 4}},
		{keep: 1, saves: []int64{10, 20, 30}, want: []int64{30}},
		{keep: -1, saves: []int64{1, 2, 3, 4, 5}, want: []int64{5, 4, 3, 2, 1}},
		// A save of an older step never removes itself.
		{keep: 2, saves: []int64{10, 20, 5}, want: []int64{20, 10, 5}},
		{keep: 2, saves: []int64{10, 20, 5, 30}, want: []int64{30, 20}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("keep=%d/%v", tt.keep, tt.saves), func(t *testing.T) {
			s, _ := newStore(t, tt.keep)
			for _, step := range tt.saves {
				mustSave(t, s, step)
			}
			dirs, err := s.List()
			if err != nil {
				t.Fatal(err)
			}
			if got := stepsOf(t, dirs); !slices.Equal(got, tt.want) {
				t.Errorf("after saves %v with Keep=%d: %v, want %v", tt.saves, tt.keep, got, tt.want)
			}
			entries, _ := os.ReadDir(s.Root)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), tmpPrefix) {
					t.Errorf("temporary %s left behind", e.Name())
				}
			}
		})
	}
}

func TestListOrderingAndIgnored(t *testing.T) {
	s, _ := newStore(t, -1)
	for _, step := range []int64{10, 2, 1_000_000_000_000, 0} {
		mustSave(t, s, step)
	}
	for _, name := range []string{
		".tmp-step-000000000099-123456", // interrupted save
		".tmp-delete-step-000000000001-5",
		"step-12",            // too short
		"step-0000000000012", // not canonical (13 digits for a 12-digit step)
		"step-00000000001x",
		"step--00000000001",
		"notes",
	} {
		if err := os.Mkdir(filepath.Join(s.Root, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.Root, "step-000000000077"), []byte("a file, not a dir"), 0o644); err != nil {
		t.Fatal(err)
	}
	dirs, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stepsOf(t, dirs), []int64{1_000_000_000_000, 10, 2, 0}; !slices.Equal(got, want) {
		t.Errorf("List steps %v, want %v", got, want)
	}
	c, err := s.LoadLatest(context.Background())
	if err != nil || c.Manifest.Step != 1_000_000_000_000 {
		t.Fatalf("LoadLatest: %v", err)
	}

	missing := &Store{Root: filepath.Join(t.TempDir(), "absent")}
	if dirs, err := missing.List(); err != nil || len(dirs) != 0 {
		t.Errorf("List of a missing root: %v %v", dirs, err)
	}
	if _, err := missing.LoadLatest(context.Background()); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("LoadLatest of a missing root: %v, want ErrNoCheckpoint", err)
	}
}

func TestSaveRemovesLeftovers(t *testing.T) {
	s, _ := newStore(t, 0)
	mustSave(t, s, 1)
	stale := filepath.Join(s.Root, ".tmp-step-000000000002-abc")
	if err := os.Mkdir(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "params.zst"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustSave(t, s, 2)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover of an interrupted save still there: %v", err)
	}
}

func TestSaveRejectsBadNames(t *testing.T) {
	tests := []struct {
		name  string
		blobs []Blob
	}{
		{"parent", []Blob{{Name: "../x"}}},
		{"dotdot", []Blob{{Name: ".."}}},
		{"dot", []Blob{{Name: "."}}},
		{"slash", []Blob{{Name: "a/b"}}},
		{"absolute", []Blob{{Name: "/etc/passwd"}}},
		{"backslash", []Blob{{Name: `a\b`}}},
		{"manifest", []Blob{{Name: "manifest.json"}}},
		{"empty", []Blob{{Name: ""}}},
		{"upper", []Blob{{Name: "Params"}}},
		{"hidden", []Blob{{Name: ".hidden"}}},
		{"nul", []Blob{{Name: "a\x00b"}}},
		{"space", []Blob{{Name: "a b"}}},
		{"too long", []Blob{{Name: strings.Repeat("a", MaxBlobNameLen+1)}}},
		{"duplicate", []Blob{{Name: "params"}, {Name: "params"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newStore(t, 0)
			_, err := s.Save(context.Background(), testManifest(1), tt.blobs)
			if !errors.Is(err, ErrBadName) {
				t.Fatalf("Save(%q): %v, want ErrBadName", tt.blobs[0].Name, err)
			}
			parent := filepath.Dir(s.Root)
			entries, _ := os.ReadDir(parent)
			for _, e := range entries {
				if e.Name() != "ckpt" {
					t.Errorf("Save wrote %s outside the root", e.Name())
				}
			}
			if dirs, _ := s.List(); len(dirs) != 0 {
				t.Errorf("refused Save left %v", dirs)
			}
		})
	}
	for _, ok := range []string{"params", "adam_m", "moco_queue", "x.y-z_0", "0"} {
		if err := ValidBlobName(ok); err != nil {
			t.Errorf("ValidBlobName(%q): %v", ok, err)
		}
	}
}

func TestSaveExistingStep(t *testing.T) {
	s, logs := newStore(t, 0)
	ctx := context.Background()
	dir := mustSave(t, s, 5)
	if _, err := s.Save(ctx, testManifest(5), testBlobs(6, 10)); !errors.Is(err, ErrExists) {
		t.Fatalf("second Save of a good step 5: %v, want ErrExists", err)
	}
	checkBlobs(t, mustLoad(t, dir), 5) // untouched
	// A damaged checkpoint of the same step is replaced.
	if err := os.Remove(filepath.Join(dir, "params.zst")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Save(ctx, testManifest(5), testBlobs(5, 1000)); err != nil {
		t.Fatalf("Save over a damaged step 5: %v", err)
	}
	checkBlobs(t, mustLoad(t, dir), 5)
	if !strings.Contains(logs.String(), "replacing damaged checkpoint") {
		t.Errorf("no warning about the replaced checkpoint; log:\n%s", logs)
	}
}

func TestSaveCanceled(t *testing.T) {
	s, _ := newStore(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Save(ctx, testManifest(1), testBlobs(1, 100)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Save with a canceled context: %v", err)
	}
	if dirs, _ := s.List(); len(dirs) != 0 {
		t.Errorf("canceled Save left %v", dirs)
	}
	if _, err := (&Store{}).Save(context.Background(), testManifest(1), nil); err == nil {
		t.Error("Save with an empty Root: no error")
	}
	if _, err := s.Save(context.Background(), testManifest(-1), nil); err == nil {
		t.Error("Save of a negative step: no error")
	}
	bad := testManifest(1)
	bad.Config = json.RawMessage(`{not json`)
	if _, err := s.Save(context.Background(), bad, nil); err == nil {
		t.Error("Save with an invalid Config: no error")
	}
}

func mustLoad(t testing.TB, dir string) *Checkpoint {
	t.Helper()
	c, err := Load(context.Background(), dir)
	if err != nil {
		t.Fatalf("Load(%s): %v", dir, err)
	}
	return c
}

// rewriteManifest edits the manifest of dir through f and writes it back
// with a checksum that matches the edit, as a buggy or hostile writer would.
func rewriteManifest(t testing.TB, dir string, f func(m *Manifest)) {
	t.Helper()
	path := filepath.Join(dir, ManifestName)
	var m Manifest
	if err := json.Unmarshal(mustRead(t, path), &m); err != nil {
		t.Fatal(err)
	}
	f(&m)
	var err error
	if m.Checksum, err = m.canonicalSum(); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func fileEntry(m *Manifest, name string) *File {
	for i := range m.Files {
		if m.Files[i].Name == name {
			return &m.Files[i]
		}
	}
	panic("no file " + name)
}

// editManifestText replaces old by new in the manifest's text, leaving the
// checksum as it was.
func editManifestText(t testing.TB, dir, old, new string) {
	t.Helper()
	path := filepath.Join(dir, ManifestName)
	b := string(mustRead(t, path))
	if !strings.Contains(b, old) {
		t.Fatalf("manifest has no %q:\n%s", old, b)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(b, old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCorruption(t *testing.T) {
	type damage struct {
		name   string
		file   string // the file every report must name
		want   error  // sentinel the reported error wraps
		loadOK bool   // Load still succeeds (damage Load does not look at)
		mutate func(t *testing.T, dir string)
	}
	params := "params.zst"
	tests := []damage{
		{name: "flip byte", file: params, want: ErrChecksum, mutate: func(t *testing.T, dir string) {
			p := filepath.Join(dir, params)
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0x40
			os.WriteFile(p, b, 0o644)
		}},
		{name: "truncate", file: params, want: ErrSize, mutate: func(t *testing.T, dir string) {
			p := filepath.Join(dir, params)
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()/2)
		}},
		{name: "truncate to zero", file: params, want: ErrSize, mutate: func(t *testing.T, dir string) {
			os.Truncate(filepath.Join(dir, params), 0)
		}},
		{name: "append", file: params, want: ErrSize, mutate: func(t *testing.T, dir string) {
			f, _ := os.OpenFile(filepath.Join(dir, params), os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte{0})
			f.Close()
		}},
		{name: "delete blob", file: params, want: ErrMissingFile, mutate: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, params))
		}},
		{name: "delete manifest", file: ManifestName, want: ErrMissingManifest, mutate: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, ManifestName))
		}},
		{name: "garbage manifest", file: ManifestName, want: ErrBadManifest, mutate: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ManifestName), []byte("\x00\xffnot json at all"), 0o644)
		}},
		{name: "empty manifest", file: ManifestName, want: ErrBadManifest, mutate: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ManifestName), nil, 0o644)
		}},
		{name: "truncated manifest", file: ManifestName, want: ErrBadManifest, mutate: func(t *testing.T, dir string) {
			p := filepath.Join(dir, ManifestName)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)/2], 0o644)
		}},
		{name: "huge manifest", file: ManifestName, want: ErrBadManifest, mutate: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ManifestName), bytes.Repeat([]byte(" "), MaxManifestBytes+10), 0o644)
		}},
		{name: "format version", file: ManifestName, want: ErrVersion, mutate: func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m *Manifest) { m.FormatVersion = 2 })
		}},
		{name: "step disagrees with dir", file: ManifestName, want: ErrBadManifest, mutate: func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m *Manifest) { m.Step = 99 })
		}},
		{name: "path in file name", file: ManifestName, want: ErrBadManifest, mutate: func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m *Manifest) { fileEntry(m, params).Name = "../../etc.zst" })
		}},
		{name: "absurd raw size", file: ManifestName, want: ErrBadManifest, mutate: func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m *Manifest) { fileEntry(m, params).RawSize = 1 << 50 })
		}},
		{name: "raw size lie", file: params, want: ErrDecode, mutate: func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m *Manifest) { fileEntry(m, params).RawSize -= 4 })
		}},
		{name: "undecodable zstd with matching checksum", file: params, want: ErrDecode, mutate: func(t *testing.T, dir string) {
			junk := bytes.Repeat([]byte("junk"), 100)
			os.WriteFile(filepath.Join(dir, params), junk, 0o644)
			rewriteManifest(t, dir, func(m *Manifest) {
				fileEntry(m, params).Size = int64(len(junk))
				fileEntry(m, params).SHA256 = sha256Hex(junk)
			})
		}},
		{name: "unknown encoding", file: ManifestName, want: ErrBadManifest, mutate: func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m *Manifest) { fileEntry(m, params).Encoding = "gzip" })
		}},
		{name: "blob replaced by a directory", file: params, want: ErrMissingFile, mutate: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, params))
			os.Mkdir(filepath.Join(dir, params), 0o755)
		}},
		{name: "sampler cursor edited", file: ManifestName, want: ErrChecksum, mutate: func(t *testing.T, dir string) {
			editManifestText(t, dir, `"sampler_cursor": 3`, `"sampler_cursor": 9`)
		}},
		{name: "file list key damaged", file: ManifestName, want: ErrBadManifest, mutate: func(t *testing.T, dir string) {
			editManifestText(t, dir, `"files"`, `"fil{s"`)
		}},
		{name: "manifest without checksum", file: ManifestName, want: ErrChecksum, mutate: func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m *Manifest) {})
			editManifestText(t, dir, `"checksum":"`, `"checksum":"x`)
		}},
		{name: "unexpected extra file", file: "stray.bin", want: ErrUnexpectedFile, loadOK: true, mutate: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "stray.bin"), []byte("x"), 0o644)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, logs := newStore(t, -1)
			mustSave(t, s, 1)
			dir := mustSave(t, s, 2)
			tt.mutate(t, dir)

			errs := Verify(dir)
			if len(errs) == 0 {
				t.Fatal("Verify found nothing wrong")
			}
			found := false
			for _, err := range errs {
				var fe *FileError
				if errors.As(err, &fe) && fe.File == tt.file && errors.Is(err, tt.want) && errors.Is(err, ErrCorrupt) &&
					strings.Contains(err.Error(), tt.file) {
					found = true
				}
			}
			if !found {
				t.Errorf("Verify reported %v; want a FileError naming %s wrapping %v", errs, tt.file, tt.want)
			}

			_, err := Load(context.Background(), dir)
			if tt.loadOK {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("Load of the damaged checkpoint: %v, want an ErrCorrupt", err)
			}
			c, err := s.LoadLatest(context.Background())
			if err != nil {
				t.Fatalf("LoadLatest: %v", err)
			}
			if c.Manifest.Step != 1 {
				t.Errorf("LoadLatest returned step %d, want the previous good step 1", c.Manifest.Step)
			}
			checkBlobs(t, c, 1)
			log := logs.String()
			if !strings.Contains(log, "level=WARN") || !strings.Contains(log, dir) || !strings.Contains(log, tt.file) {
				t.Errorf("no warning naming %s and %s; log:\n%s", dir, tt.file, log)
			}
			if got, err := s.Resolve("latest"); err != nil || got != filepath.Join(s.Root, "step-000000000001") {
				t.Errorf("Resolve(latest) = %q, %v", got, err)
			}
		})
	}
}

func TestLoadLatestNoneGood(t *testing.T) {
	s, logs := newStore(t, -1)
	for _, step := range []int64{1, 2} {
		dir := mustSave(t, s, step)
		os.Remove(filepath.Join(dir, ManifestName))
	}
	_, err := s.LoadLatest(context.Background())
	if !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("LoadLatest with only damaged checkpoints: %v, want ErrNoCheckpoint", err)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 2 {
		t.Errorf("%d warnings, want 2:\n%s", n, logs)
	}
	if _, err := s.Resolve("latest"); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("Resolve(latest): %v", err)
	}
}

func TestResolve(t *testing.T) {
	s, _ := newStore(t, -1)
	d1 := mustSave(t, s, 1)
	d2 := mustSave(t, s, 2)
	tests := []struct {
		spec, want string
		ok         bool
	}{
		{"latest", d2, true},
		{d1, d1, true},
		{d1 + "/", d1, true},
		{"step-000000000001", d1, true},
		{"1", d1, true},
		{"2", d2, true},
		{"3", "", false},
		{"", "", false},
		{filepath.Join(s.Root, "nope"), "", false},
	}
	for _, tt := range tests {
		got, err := s.Resolve(tt.spec)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q (ok=%v)", tt.spec, got, err, tt.want, tt.ok)
		}
	}
}

func TestDecodeManifest(t *testing.T) {
	m := Manifest{FormatVersion: 1, Step: 3, Files: []File{{Name: "params.zst", Size: 10, RawSize: 40,
		SHA256: strings.Repeat("ab", 32), Encoding: "zstd"}}}
	var err error
	if m.Checksum, err = m.canonicalSum(); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(&m)
	good := string(b)
	if _, err := DecodeManifest(b); err != nil {
		t.Fatalf("good manifest: %v", err)
	}
	indented, _ := json.MarshalIndent(&m, "\t", "   ")
	if _, err := DecodeManifest(indented); err != nil {
		t.Fatalf("good manifest, other whitespace: %v", err)
	}
	bad := []string{
		``,
		`null`,
		`[]`,
		`{"format_version":0}`,
		`{"format_version":1,"step":-1}`,
		`{"format_version":1,"files":[]}`,
		`{"format_version":1,"files":null}`,
		good + ` {}`,
		strings.Replace(good, `"step":3`, `"step":4`, 1),
		strings.Replace(good, `"step":3`, `"step":3,"surprise":1`, 1),
		strings.Replace(good, `"params.zst"`, `"params"`, 1),
		strings.Replace(good, `"params.zst"`, `"a/b.zst"`, 1),
		strings.Replace(good, `"params.zst"`, `"manifest.json"`, 1),
		strings.Replace(good, `"size":10`, `"size":-1`, 1),
		strings.Replace(good, `"raw_size":40`, `"raw_size":9223372036854775807`, 1),
		strings.Replace(good, strings.Repeat("ab", 32), strings.Repeat("AB", 32), 1),
		strings.Replace(good, strings.Repeat("ab", 32), strings.Repeat("zz", 32), 1),
		strings.Replace(good, strings.Repeat("ab", 32), "ab", 1),
		strings.Replace(good, `"zstd"`, `"none"`, 1),
		strings.Replace(good, `}]`, `},{"name":"params.zst","size":10,"raw_size":40,"sha256":"`+strings.Repeat("ab", 32)+`","encoding":"zstd"}]`, 1),
		strings.Replace(good, m.Checksum, strings.Repeat("0", 64), 1),
	}
	for _, b := range bad {
		if _, err := DecodeManifest([]byte(b)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodeManifest(%.80q): %v, want an ErrCorrupt", b, err)
		}
	}
}

// TestConcurrentSaves saves from several goroutines through one Store and
// through two Stores on the same root (serialised by the root lock), then
// checks every checkpoint and that no goroutine outlives the calls.
func TestConcurrentSaves(t *testing.T) {
	before := runtime.NumGoroutine()
	s1, _ := newStore(t, -1)
	s2 := &Store{Root: s1.Root, Keep: -1, Logger: s1.Logger}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		s := s1
		if i%2 == 1 {
			s = s2
		}
		wg.Go(func() {
			_, errs[i] = s.Save(ctx, testManifest(int64(i)), testBlobs(int64(i), 1000))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Save(step %d): %v", i, err)
		}
	}
	dirs, err := s1.List()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stepsOf(t, dirs), []int64{7, 6, 5, 4, 3, 2, 1, 0}; !slices.Equal(got, want) {
		t.Fatalf("steps %v, want %v", got, want)
	}
	for _, d := range dirs {
		c := mustLoad(t, d)
		checkBlobs(t, c, c.Manifest.Step)
	}
	if _, err := s2.LoadLatest(ctx); err != nil {
		t.Fatal(err)
	}
	// Goroutines of the calls above must be gone.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after the saves, %d before", n, before)
	}
}

// TestLocate: a checkpoint, a folder of checkpoints and a run directory
// each name a checkpoint (the latter two their newest); anything else is
// an error that says what was looked for.
func TestLocate(t *testing.T) {
	run := t.TempDir()
	s := &Store{Root: filepath.Join(run, "checkpoints"), Keep: -1}
	mustSave(t, s, 3)
	newest := mustSave(t, s, 12)
	mustSave(t, s, 7)
	empty := t.TempDir()
	for _, tc := range []struct {
		name, path, want, err string
	}{
		{"checkpoint", newest, newest, ""},
		{"folder of checkpoints", s.Root, newest, ""},
		{"run directory", run, newest, ""},
		{"empty directory", empty, "", "holds no checkpoint"},
		{"missing", filepath.Join(empty, "nothing"), "", "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Locate(tc.path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Locate(%s) = %q, %v; want an error with %q", tc.path, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Locate(%s) = %q, %v; want %q", tc.path, got, err, tc.want)
			}
		})
	}
}

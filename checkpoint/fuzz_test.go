package checkpoint

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzManifest feeds arbitrary bytes to the manifest decoder: it must never
// panic, and whatever it accepts must be a valid manifest that survives a
// re-encoding unchanged.
func FuzzManifest(f *testing.F) {
	s := &Store{Root: f.TempDir()}
	dir, err := s.Save(context.Background(), testManifest(3), testBlobs(3, 16))
	if err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"format_version":1,"step":0,"files":[]}`))
	f.Add([]byte(`{"format_version":1,"files":[{"name":"../x.zst"}]}`))
	f.Add([]byte(`{"format_version":1,"files":[{"name":"a.zst","raw_size":1e300}]}`))
	f.Add([]byte(`null`))
	f.Add([]byte{0xff, 0xfe, '{'})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(b)
		if err != nil {
			return
		}
		if m.FormatVersion != FormatVersion || m.Step < 0 {
			t.Fatalf("accepted version %d step %d", m.FormatVersion, m.Step)
		}
		for _, f := range m.Files {
			if _, ok := blobNameOf(f.Name); !ok || filepath.Base(f.Name) != f.Name {
				t.Fatalf("accepted file name %q", f.Name)
			}
			if f.RawSize < 0 || f.RawSize > MaxRawSize || f.Size < 0 {
				t.Fatalf("accepted sizes %+v", f)
			}
		}
		again, err := json.Marshal(&m)
		if err != nil {
			t.Fatalf("re-encoding an accepted manifest: %v", err)
		}
		m2, err := DecodeManifest(again)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", again, err)
		}
		again2, _ := json.Marshal(&m2)
		if !bytes.Equal(again, again2) {
			t.Fatalf("re-encoding is not stable:\n%s\n%s", again, again2)
		}
	})
}

// FuzzLoadMutated damages one file of a good checkpoint (flip a byte,
// truncate) and loads it. Load and Verify must not panic and must agree; a
// damaged blob file must be refused; whatever Load accepts must hold exactly
// the saved bytes.
func FuzzLoadMutated(f *testing.F) {
	template := filepath.Join(f.TempDir(), "step-000000000009")
	s := &Store{Root: filepath.Dir(template), Keep: -1}
	if _, err := s.Save(context.Background(), testManifest(9), testBlobs(9, 64)); err != nil {
		f.Fatal(err)
	}
	original, err := Inspect(template)
	if err != nil {
		f.Fatal(err)
	}
	entries, err := os.ReadDir(template)
	if err != nil {
		f.Fatal(err)
	}
	var names []string
	contents := map[string][]byte{}
	for _, e := range entries {
		names = append(names, e.Name())
		contents[e.Name()], _ = os.ReadFile(filepath.Join(template, e.Name()))
	}
	slices.Sort(names)
	want := map[string][]byte{}
	for _, b := range testBlobs(9, 64) {
		want[b.Name] = b.Data
	}
	f.Add(uint8(0), uint32(0), uint8(0), false)
	f.Add(uint8(1), uint32(10), uint8(1), false)
	f.Add(uint8(2), uint32(5), uint8(0), true)
	f.Add(uint8(3), uint32(40), uint8(0x20), false)
	f.Fuzz(func(t *testing.T, which uint8, off uint32, xor uint8, truncate bool) {
		name := names[int(which)%len(names)]
		dir := filepath.Join(t.TempDir(), "step-000000000009")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for n, b := range contents {
			data := bytes.Clone(b)
			if n == name && len(data) > 0 {
				i := int(off) % len(data)
				if truncate {
					data = data[:i]
				} else {
					data[i] ^= xor
				}
			}
			if err := os.WriteFile(filepath.Join(dir, n), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		changed := !bytes.Equal(mustRead(t, filepath.Join(dir, name)), contents[name])
		c, loadErr := Load(context.Background(), dir)
		verifyErrs := Verify(dir)
		if (loadErr == nil) != (verifyErrs == nil) {
			t.Fatalf("Load says %v, Verify says %v", loadErr, verifyErrs)
		}
		if !changed && loadErr != nil {
			t.Fatalf("unchanged checkpoint refused: %v", loadErr)
		}
		if changed && name != ManifestName && loadErr == nil {
			t.Fatalf("damaged %s accepted", name)
		}
		if loadErr != nil {
			return
		}
		if got, want := mustCanonical(t, c.Manifest), mustCanonical(t, original); got != want {
			t.Fatalf("accepted manifest differs from the saved one:\n%s\n%s", got, want)
		}
		for _, n := range c.Names() {
			got, _ := c.Blob(n)
			if !bytes.Equal(got, want[n]) {
				t.Fatalf("accepted blob %q differs from what was saved", n)
			}
		}
	})
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustCanonical(t *testing.T, m Manifest) string {
	t.Helper()
	b, err := json.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

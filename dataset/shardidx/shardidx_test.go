package shardidx

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestEncodeDecode(t *testing.T) {
	ix := &Index{Kind: "tar/1", Size: 1 << 40, ModTime: -5, Entries: []Entry{
		{"a.jpg", 512, 100, 0}, {"", 0, 0, 1}, {"dir/ü.txt", 1 << 33, 0, -3},
	}}
	got, err := Decode(Encode(ix))
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != ix.Kind || got.Size != ix.Size || got.ModTime != ix.ModTime || !slices.Equal(got.Entries, ix.Entries) {
		t.Fatalf("round trip: %+v, want %+v", got, ix)
	}
	b := Encode(ix)
	for i := range b {
		c := slices.Clone(b)
		c[i] ^= 0x40
		if _, err := Decode(c); !errors.Is(err, ErrFormat) {
			t.Fatalf("flipped byte %d: %v", i, err)
		}
	}
	if _, err := Decode(b[:len(b)-1]); !errors.Is(err, ErrFormat) {
		t.Fatal("a cut index decodes")
	}
}

func TestLoadCaches(t *testing.T) {
	dir := t.TempDir()
	shard := filepath.Join(dir, "s.tar")
	if err := os.WriteFile(shard, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	builds := 0
	build := func(f *os.File, size int64) ([]Entry, error) {
		builds++
		return []Entry{{Name: "x", Offset: 1, Size: size - 1}}, nil
	}
	cache := filepath.Join(dir, "cache")
	for range 2 {
		ix, err := Load(shard, "k/1", cache, build)
		if err != nil || len(ix.Entries) != 1 || ix.Entries[0].Size != 9 {
			t.Fatalf("Load: %+v %v", ix, err)
		}
	}
	if builds != 1 {
		t.Fatalf("built %d times, want 1 (the index beside the shard is reused)", builds)
	}
	if _, err := os.Stat(shard + ".idx"); err != nil {
		t.Fatalf("no index beside the shard: %v", err)
	}
	// Another kind builds again.
	if _, err := Load(shard, "k/2", cache, build); err != nil || builds != 2 {
		t.Fatalf("another kind: builds %d, %v", builds, err)
	}
	// A rewritten shard (other size and time) builds again.
	if err := os.WriteFile(shard, []byte("0123456789ab"), 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	os.Chtimes(shard, later, later)
	ix, err := Load(shard, "k/2", cache, build)
	if err != nil || builds != 3 || ix.Entries[0].Size != 11 {
		t.Fatalf("rewritten shard: builds %d, %+v, %v", builds, ix, err)
	}
	// The same size but another modification time builds again.
	earlier := later.Add(-time.Minute)
	os.Chtimes(shard, earlier, earlier)
	if _, err := Load(shard, "k/2", cache, build); err != nil || builds != 4 {
		t.Fatalf("touched shard: builds %d, %v", builds, err)
	}
}

func TestLoadFallsBackToCache(t *testing.T) {
	dir := t.TempDir()
	shard := filepath.Join(dir, "s.tar")
	os.WriteFile(shard, []byte("data"), 0o644)
	// A folder where the index would go: it cannot be written beside the
	// shard (as in a read-only folder), so it goes to the cache.
	if err := os.Mkdir(shard+".idx", 0o755); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	builds := 0
	build := func(*os.File, int64) ([]Entry, error) { builds++; return []Entry{{Name: "m"}}, nil }
	for range 2 {
		if _, err := Load(shard, "k", cache, build); err != nil {
			t.Fatal(err)
		}
	}
	if builds != 1 {
		t.Fatalf("built %d times, want 1 (the cached index is reused)", builds)
	}
	if _, err := os.Stat(Paths(shard, cache)[1]); err != nil {
		t.Fatalf("no index in the cache: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.tar"), "k", cache, build); err == nil {
		t.Fatal("Load of a missing shard succeeded")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(&Index{Kind: "tar/1", Size: 10, ModTime: 7, Entries: []Entry{{"a", 1, 2, 3}}}))
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		again, err := Decode(Encode(ix))
		if err != nil || !slices.Equal(again.Entries, ix.Entries) {
			t.Fatalf("re-encoding changed the index: %v", err)
		}
	})
}

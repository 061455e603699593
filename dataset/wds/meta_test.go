package wds

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/infonce/infonce/dataset"
)

// FuzzMeta reads arbitrary bytes as a sample's KEY.json: the sample is
// read or refused as bad-json, and its episode, task and scene are −1 or
// the non-negative integers the JSON names.
func FuzzMeta(f *testing.F) {
	f.Add([]byte(`{"episode":3,"scene":1,"step":2,"episode_len":9,"task":4}`))
	f.Add([]byte(`{"scene":-2,"episode":1.5}`))
	f.Add([]byte(`{"scene":1e300}`))
	f.Add([]byte(`[1,2]`))
	f.Add([]byte(`{"scene":"7"}`))
	f.Fuzz(func(t *testing.T, meta []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "shard.tar")
		write(t, path, tarOf(t, member{"0.txt", []byte("a caption")}, member{"0.json", meta}))
		src, err := Open(path, dataset.OpenOptions{CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		var s dataset.Sample
		err = src.Sample(context.Background(), 0, &s)
		if err != nil {
			if !errors.Is(err, dataset.ErrBadSample) || reason(err) != "bad-json" {
				t.Fatalf("metadata %q: %v", meta, err)
			}
			return
		}
		var m map[string]any
		if json.Unmarshal(meta, &m) != nil {
			t.Fatalf("metadata %q read, but it is not a JSON object", meta)
		}
		check := func(name string, got int64) {
			v, ok := m[name].(float64)
			want := int64(-1)
			if ok && v >= 0 && v == float64(int(v)) {
				want = int64(v)
			}
			if got != want {
				t.Fatalf("metadata %q: %s %d, want %d", meta, name, got, want)
			}
		}
		check("episode", s.Episode)
		check("task", int64(s.Task))
		check("scene", s.Scene)
	})
}

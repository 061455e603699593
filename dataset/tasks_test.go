package dataset_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infonce/infonce/dataset"
)

func TestTaskFamilies(t *testing.T) {
	tf := &dataset.TaskFamilies{IDsPerFamily: 10, Families: []dataset.TaskFamily{
		{Name: "push", Prompts: []string{"push an object", "shove an object"}},
		{Name: "lift", Prompts: []string{"lift an object"}},
	}}
	for _, c := range []struct{ task, want int }{{-1, -1}, {0, 0}, {9, 0}, {10, 1}, {19, 1}, {20, -1}} {
		if got := tf.Family(c.task); got != c.want {
			t.Errorf("Family(%d) = %d, want %d", c.task, got, c.want)
		}
	}
	root := t.TempDir()
	split := filepath.Join(root, "val")
	if err := os.MkdirAll(split, 0o755); err != nil {
		t.Fatal(err)
	}
	if got, path, err := dataset.FindTaskFamilies("wds:" + filepath.Join(split, "shard-000000.tar")); got != nil || path != "" || err != nil {
		t.Fatalf("no tasks.json: %v %q %v", got, path, err)
	}
	if err := dataset.WriteTaskFamilies(filepath.Join(root, dataset.TasksFile), tf); err != nil {
		t.Fatal(err)
	}
	// Found from a shard's spec (the folder above the split) and from a
	// folder's spec.
	for _, spec := range []string{"wds:" + filepath.Join(split, "shard-{000000..000003}.tar"), "rlds:" + split, "rlds:" + root} {
		got, path, err := dataset.FindTaskFamilies(spec)
		if err != nil || got == nil || path != filepath.Join(root, dataset.TasksFile) {
			t.Fatalf("%s: %v %q %v", spec, got, path, err)
		}
		if strings.Join(got.Names(), ",") != "push,lift" || got.IDsPerFamily != 10 || len(got.Families[0].Prompts) != 2 {
			t.Fatalf("%s: read back %+v", spec, got)
		}
	}
	// A file that does not decode is an error, not "none".
	if err := os.WriteFile(filepath.Join(split, dataset.TasksFile), []byte(`{"families": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := dataset.FindTaskFamilies("rlds:" + split); err == nil {
		t.Fatal("a tasks.json without families was accepted")
	}
}

func TestTaskFamiliesRefused(t *testing.T) {
	for _, c := range []struct{ name, json, want string }{
		{"not json", `{`, "unexpected end"},
		{"one family", `{"families":[{"name":"a","prompts":["x"]}],"ids_per_family":1}`, "at least 2"},
		{"no ids", `{"families":[{"name":"a","prompts":["x"]},{"name":"b","prompts":["y"]}]}`, "ids_per_family 0"},
		{"twice", `{"families":[{"name":"a","prompts":["x"]},{"name":"a","prompts":["y"]}],"ids_per_family":1}`, "named twice"},
		{"no prompt", `{"families":[{"name":"a","prompts":[]},{"name":"b","prompts":["y"]}],"ids_per_family":1}`, "no prompt"},
		{"empty prompt", `{"families":[{"name":"a","prompts":[" "]},{"name":"b","prompts":["y"]}],"ids_per_family":1}`, "is empty"},
		{"no name", `{"families":[{"name":"","prompts":["x"]},{"name":"b","prompts":["y"]}],"ids_per_family":1}`, "no name"},
	} {
		_, err := dataset.DecodeTaskFamilies([]byte(c.json), "tasks.json")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// FuzzDecodeTaskFamilies: any bytes give families that pass Validate, or
// an error; Family never indexes past the families.
func FuzzDecodeTaskFamilies(f *testing.F) {
	f.Add([]byte(`{"families":[{"name":"a","prompts":["x"]},{"name":"b","prompts":["y"]}],"ids_per_family":3}`))
	f.Add([]byte(`{"families":null,"ids_per_family":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tf, err := dataset.DecodeTaskFamilies(b, "fuzz")
		if err != nil {
			return
		}
		if err := tf.Validate(); err != nil {
			t.Fatal(err)
		}
		for _, task := range []int{-1, 0, 1, tf.IDsPerFamily, 1 << 30} {
			if c := tf.Family(task); c < -1 || c >= len(tf.Families) {
				t.Fatalf("Family(%d) = %d of %d families", task, c, len(tf.Families))
			}
		}
	})
}

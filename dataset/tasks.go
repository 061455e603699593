package dataset

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TasksFile is the name of a data set's task-family file: the families of
// its tasks, each with prompts that describe the family in words, and the
// rule that maps a sample's task id (Sample.Task) to its family. It lies in
// the folder of a split or in the folder above (infonce data synth-vla
// writes DIR/tasks.json beside DIR/train and DIR/val).
const TasksFile = "tasks.json"

// TaskFamily is one family of tasks and its prompts: instructions of the
// family with generic objects ("push an object to the left of another
// object"), whose text embeddings are averaged for zero-shot recognition.
type TaskFamily struct {
	Name    string   `json:"name"`
	Prompts []string `json:"prompts"`
}

// TaskFamilies is the content of a TasksFile. Task id t belongs to family
// ⌊t / IDsPerFamily⌋: the ids of a family are one contiguous block.
type TaskFamilies struct {
	Families     []TaskFamily `json:"families"`
	IDsPerFamily int          `json:"ids_per_family"`
}

// Family is the index of task id t's family, or −1 when t is negative (no
// task) or beyond the last family.
func (f *TaskFamilies) Family(t int) int {
	if t < 0 || f.IDsPerFamily < 1 {
		return -1
	}
	if c := t / f.IDsPerFamily; c < len(f.Families) {
		return c
	}
	return -1
}

// Names are the families' names, in order.
func (f *TaskFamilies) Names() []string {
	out := make([]string, len(f.Families))
	for i, fam := range f.Families {
		out[i] = fam.Name
	}
	return out
}

// Validate checks that there are at least two families, each with a
// distinct non-empty name and at least one non-empty prompt, and that
// IDsPerFamily is positive.
func (f *TaskFamilies) Validate() error {
	var errs []error
	if len(f.Families) < 2 {
		errs = append(errs, fmt.Errorf("%d task families, want at least 2", len(f.Families)))
	}
	if f.IDsPerFamily < 1 {
		errs = append(errs, fmt.Errorf("ids_per_family %d, want ≥ 1", f.IDsPerFamily))
	}
	seen := map[string]bool{}
	for i, fam := range f.Families {
		if strings.TrimSpace(fam.Name) == "" {
			errs = append(errs, fmt.Errorf("family %d has no name", i))
		} else if seen[fam.Name] {
			errs = append(errs, fmt.Errorf("family %q named twice", fam.Name))
		}
		seen[fam.Name] = true
		if len(fam.Prompts) == 0 {
			errs = append(errs, fmt.Errorf("family %q has no prompt", fam.Name))
		}
		for j, p := range fam.Prompts {
			if strings.TrimSpace(p) == "" {
				errs = append(errs, fmt.Errorf("family %q: prompt %d is empty", fam.Name, j))
			}
		}
	}
	return errors.Join(errs...)
}

// DecodeTaskFamilies decodes and validates the bytes of a TasksFile; name
// is used in messages.
func DecodeTaskFamilies(b []byte, name string) (*TaskFamilies, error) {
	var f TaskFamilies
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("dataset: %s: %w", name, err)
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("dataset: %s: %w", name, err)
	}
	return &f, nil
}

// ReadTaskFamilies reads and validates the TasksFile at path.
func ReadTaskFamilies(path string) (*TaskFamilies, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	return DecodeTaskFamilies(b, path)
}

// WriteTaskFamilies validates f and writes it to path as indented JSON.
func WriteTaskFamilies(path string, f *TaskFamilies) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("dataset: %s: %w", path, err)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("dataset: %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	return nil
}

// FindTaskFamilies looks for the TasksFile of the data a spec names (as
// Open takes it: "wds:DIR/shard-{…}.tar", "rlds:DIR", …): in the spec's
// folder (the path itself when it is a folder, else the folder that holds
// it), then in the folder above. It returns the families and the file's
// path, or nil and "" when there is none; a file that exists but does not
// decode is an error.
func FindTaskFamilies(spec string) (*TaskFamilies, string, error) {
	p := spec
	if scheme, rest, ok := strings.Cut(spec, ":"); ok && len(scheme) > 1 {
		p = rest
	}
	if p == "" {
		return nil, "", nil
	}
	dir := p
	if st, err := os.Stat(p); err != nil || !st.IsDir() {
		dir = filepath.Dir(p)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		path := filepath.Join(d, TasksFile)
		f, err := ReadTaskFamilies(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		return f, path, nil
	}
	return nil, "", nil
}

package folder

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/infonce/infonce/dataset"
)

func init() {
	dataset.Register("folder", func(arg string, opts dataset.OpenOptions) (dataset.Source, error) {
		return Open(arg, opts)
	})
}

// IsImage reports whether name has one of the image extensions read
// (png, jpg, jpeg, gif; any case).
func IsImage(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".png", ".jpg", ".jpeg", ".gif":
		return true
	}
	return false
}

// ClassName is the class name of a folder: its name with "_" as a space.
func ClassName(folder string) string { return strings.ReplaceAll(folder, "_", " ") }

// Source is an image-folder tree.
type Source struct {
	dir     string
	classes []string
	files   []string // relative to dir
	labels  []int32
	caps    *dataset.Captioner
	opts    dataset.OpenOptions
}

// Open lists the tree under dir. A dir that does not exist, without class
// folders, or without any image is an error that says what was looked
// for.
func Open(dir string, opts dataset.OpenOptions) (*Source, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("folder: %w (want DIR/<class>/<image>.png|jpg|jpeg|gif)", err)
	}
	s := &Source{dir: dir, opts: opts}
	for _, e := range ents {
		isDir := e.IsDir()
		if e.Type()&fs.ModeSymlink != 0 {
			// A class folder may be a link, as ImageFolder follows them.
			fi, err := os.Stat(filepath.Join(dir, e.Name()))
			isDir = err == nil && fi.IsDir()
		}
		if !isDir || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		label := int32(len(s.classes))
		var files []string
		err := filepath.WalkDir(filepath.Join(dir, e.Name())+string(filepath.Separator), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() && IsImage(d.Name()) {
				rel, err := filepath.Rel(dir, p)
				if err != nil {
					return err
				}
				files = append(files, rel)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("folder: %w", err)
		}
		// ImageFolder keeps a class even when it is empty, so labels
		// follow the sorted folder names.
		s.classes = append(s.classes, ClassName(e.Name()))
		slices.Sort(files)
		for _, f := range files {
			s.files = append(s.files, f)
			s.labels = append(s.labels, label)
		}
	}
	if len(s.classes) == 0 {
		return nil, fmt.Errorf("folder: %s has no class folder: want DIR/<class>/<image>.png|jpg|jpeg|gif", dir)
	}
	if len(s.files) == 0 {
		return nil, fmt.Errorf("folder: %s: no .png, .jpg, .jpeg or .gif file in its %d class folders", dir, len(s.classes))
	}
	var templates []string
	if opts.Templates != "" {
		if templates, err = dataset.ReadTemplates(opts.Templates); err != nil {
			return nil, fmt.Errorf("folder: %w", err)
		}
	}
	s.caps = dataset.NewTemplateCaptioner(s.classes, templates)
	return s, nil
}

// Name is "folder:DIR".
func (s *Source) Name() string { return "folder:" + s.dir }

// Len is the number of images.
func (s *Source) Len() int { return len(s.files) }

// Fields are image, label and text.
func (s *Source) Fields() []dataset.Field {
	return []dataset.Field{dataset.FieldImage, dataset.FieldLabel, dataset.FieldText}
}

// Classes are the class names, by label.
func (s *Source) Classes() []string { return slices.Clone(s.classes) }

// Captioner renders the classes through the templates.
func (s *Source) Captioner() *dataset.Captioner { return s.caps }

// Sample decodes image i.
func (s *Source) Sample(ctx context.Context, i int, dst *dataset.Sample) error {
	if i < 0 || i >= len(s.files) {
		return fmt.Errorf("folder: %s: sample %d out of range [0, %d)", s.dir, i, len(s.files))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dst.Reset()
	dst.Index, dst.Key = i, s.files[i]
	b, err := os.ReadFile(filepath.Join(s.dir, s.files[i]))
	if err != nil {
		return &dataset.BadSample{Reason: "unreadable-file", Key: dst.Key, Err: err}
	}
	if dst.Image, err = dataset.DecodeImage(b, dst.Key, s.opts.Background); err != nil {
		return err
	}
	dst.Label = int(s.labels[i])
	dst.Text = dataset.ClassCaption(s.caps, s.opts.Seed, dst.Label, i)
	return nil
}

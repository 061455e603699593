package dataset

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Images is a set of N grey images of H×W unsigned-byte pixels with a label
// each. Image i is Pixels[i*H*W : (i+1)*H*W], row-major.
type Images struct {
	N, H, W int
	Pixels  []byte // N*H*W
	Labels  []uint8
}

// Image returns the pixels of image i (a view, not a copy).
func (im *Images) Image(i int) []byte {
	d := im.H * im.W
	return im.Pixels[i*d : (i+1)*d : (i+1)*d]
}

// Set is a labelled image data set with a training and a test split.
// Labels index Classes.
type Set struct {
	Name        string
	Train, Test Images
	Classes     []string
}

//go:embed mnist/*.gz
var mnistFS embed.FS

// The four file names of an idx data set, as MNIST names them.
const (
	trainImagesFile = "train-images-idx3-ubyte"
	trainLabelsFile = "train-labels-idx1-ubyte"
	testImagesFile  = "t10k-images-idx3-ubyte"
	testLabelsFile  = "t10k-labels-idx1-ubyte"
)

var idxFiles = []string{trainImagesFile, trainLabelsFile, testImagesFile, testLabelsFile}

// digitNames are the class names of MNIST, in label order.
var digitNames = []string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}

// MNIST decodes the MNIST data set embedded in the binary: 60000 training and
// 10000 test images of 28×28, classes "zero" to "nine". Each call decodes
// afresh (about half a second) and returns memory of its own.
func MNIST() (*Set, error) {
	read := func(name string) (*IDX, error) {
		b, err := mnistFS.ReadFile("mnist/" + name + ".gz")
		if err != nil {
			return nil, fmt.Errorf("dataset: embedded mnist: %w", err)
		}
		x, err := ReadIDX(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("dataset: embedded mnist %s.gz: %w", name, err)
		}
		return x, nil
	}
	s, err := assemble("mnist", "embedded mnist", read)
	if err != nil {
		return nil, err
	}
	if err := s.setClasses(slices.Clone(digitNames), "the built-in digit names"); err != nil {
		return nil, err
	}
	return s, nil
}

// Load opens the data set named by spec, the value of the command line's
// data-set flag:
//
//	mnist     the embedded MNIST (see MNIST)
//	idx:DIR   the idx files train-images-idx3-ubyte, train-labels-idx1-ubyte,
//	          t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte in DIR, each
//	          optionally gzip-compressed with a .gz suffix
//
// Class names come from classesFile, one per line in label order, when it is
// not empty; otherwise from DIR/classes.txt (for mnist: the digit names).
// Load checks that images and labels agree in number, that every label has a
// class name, that the class names are distinct and non-empty, and that the
// training and test images have the same size.
func Load(spec, classesFile string) (*Set, error) {
	var (
		names []string
		err   error
	)
	// Read the class names first: a mistake there is found before the
	// images are decoded.
	switch {
	case spec == "mnist":
		if classesFile == "" {
			return mnistSource()
		}
		if names, err = readClasses(classesFile); err != nil {
			return nil, err
		}
		s, err := mnistSource()
		if err != nil {
			return nil, err
		}
		if err := s.setClasses(names, classesFile); err != nil {
			return nil, err
		}
		return s, nil
	case strings.HasPrefix(spec, "idx:"):
		dir := strings.TrimPrefix(spec, "idx:")
		if dir == "" {
			return nil, fmt.Errorf("dataset: %q names no directory: want idx:DIR", spec)
		}
		if fi, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("dataset: %s: %w", spec, err)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("dataset: %s: %s is not a directory", spec, dir)
		}
		if classesFile == "" {
			classesFile = filepath.Join(dir, "classes.txt")
			if _, err := os.Stat(classesFile); errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("dataset: %s: no class names: write %s (one name per line, in label order) or give a classes file", spec, classesFile)
			}
		}
		if names, err = readClasses(classesFile); err != nil {
			return nil, err
		}
		s, err := loadIDXDir(dir)
		if err != nil {
			return nil, err
		}
		if err := s.setClasses(names, classesFile); err != nil {
			return nil, err
		}
		return s, nil
	default:
		return nil, fmt.Errorf("dataset: unknown data set %q: want \"mnist\" (the embedded MNIST) or \"idx:DIR\" (a directory of idx files)", spec)
	}
}

// mnistSource is what Load("mnist", …) decodes; tests replace it with a
// cached copy to keep them fast.
var mnistSource = MNIST

// loadIDXDir reads the four idx files of dir; the set has no class names yet.
func loadIDXDir(dir string) (*Set, error) {
	read := func(name string) (*IDX, error) {
		for _, p := range []string{filepath.Join(dir, name), filepath.Join(dir, name+".gz")} {
			x, err := ReadIDXFile(p)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("dataset: %w", err)
			}
			return x, nil
		}
		return nil, fmt.Errorf("dataset: idx:%s: missing %s (or %s.gz); the directory must hold %s, each optionally with .gz",
			dir, name, name, strings.Join(idxFiles, ", "))
	}
	return assemble(filepath.Base(filepath.Clean(dir)), "idx:"+dir, read)
}

// assemble reads the four idx files through read and checks their shapes.
func assemble(name, where string, read func(string) (*IDX, error)) (*Set, error) {
	s := &Set{Name: name}
	split := func(dst *Images, imagesFile, labelsFile string) error {
		im, err := read(imagesFile)
		if err != nil {
			return err
		}
		lb, err := read(labelsFile)
		if err != nil {
			return err
		}
		if len(im.Dims) != 3 {
			return fmt.Errorf("dataset: %s: %s has shape %s: want 3 dimensions, count×rows×columns", where, imagesFile, shape(im.Dims))
		}
		if len(lb.Dims) != 1 {
			return fmt.Errorf("dataset: %s: %s has shape %s: want 1 dimension, the count", where, labelsFile, shape(lb.Dims))
		}
		if im.Dims[0] != lb.Dims[0] {
			return fmt.Errorf("dataset: %s: %s has %d images but %s has %d labels", where, imagesFile, im.Dims[0], labelsFile, lb.Dims[0])
		}
		*dst = Images{N: im.Dims[0], H: im.Dims[1], W: im.Dims[2], Pixels: im.Data, Labels: lb.Data}
		return nil
	}
	if err := split(&s.Train, trainImagesFile, trainLabelsFile); err != nil {
		return nil, err
	}
	if err := split(&s.Test, testImagesFile, testLabelsFile); err != nil {
		return nil, err
	}
	if s.Train.H != s.Test.H || s.Train.W != s.Test.W {
		return nil, fmt.Errorf("dataset: %s: training images are %d×%d but test images are %d×%d; both splits must have one size",
			where, s.Train.H, s.Train.W, s.Test.H, s.Test.W)
	}
	if s.Train.N == 0 {
		return nil, fmt.Errorf("dataset: %s: %s holds no images", where, trainImagesFile)
	}
	return s, nil
}

// readClasses reads one class name per line. Surrounding white space is
// trimmed and trailing empty lines are ignored; an empty line before the
// last name is an error.
func readClasses(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: class names: %w", err)
	}
	lines := strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	names := make([]string, len(lines))
	for i, l := range lines {
		names[i] = strings.TrimSpace(l)
		if names[i] == "" {
			return nil, fmt.Errorf("dataset: %s: line %d is empty: write one class name per line, in label order", path, i+1)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("dataset: %s has no class names: write one per line, in label order", path)
	}
	return names, nil
}

// setClasses checks names against the labels of s and installs them. from
// names their source for error messages.
func (s *Set) setClasses(names []string, from string) error {
	seen := make(map[string]int, len(names))
	for i, n := range names {
		if j, ok := seen[n]; ok {
			return fmt.Errorf("dataset: %s: class name %q appears for label %d and label %d; class names must be distinct", from, n, j, i)
		}
		seen[n] = i
	}
	for _, sp := range []struct {
		file string
		im   *Images
	}{{trainLabelsFile, &s.Train}, {testLabelsFile, &s.Test}} {
		for i, l := range sp.im.Labels {
			if int(l) >= len(names) {
				return fmt.Errorf("dataset: %s: label %d of sample %d has no class name: %s lists only %d (labels 0 to %d); add the missing names to %s",
					sp.file, l, i, from, len(names), len(names)-1, from)
			}
		}
	}
	s.Classes = names
	return nil
}

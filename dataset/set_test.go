package dataset

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// mnistOnce decodes the embedded MNIST once for all tests of the package.
var mnistOnce = sync.OnceValues(MNIST)

func init() {
	// Load("mnist", …) in tests gets a private copy of the decoded set
	// instead of decoding again.
	mnistSource = func() (*Set, error) {
		s, err := mnistOnce()
		if err != nil {
			return nil, err
		}
		c := *s
		c.Classes = slices.Clone(s.Classes)
		for _, im := range []*Images{&c.Train, &c.Test} {
			im.Pixels, im.Labels = slices.Clone(im.Pixels), slices.Clone(im.Labels)
		}
		return &c, nil
	}
}

func loadMNIST(t testing.TB) *Set {
	t.Helper()
	s, err := mnistOnce()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMNIST(t *testing.T) {
	s := loadMNIST(t)
	if s.Name != "mnist" || len(s.Classes) != 10 || s.Classes[0] != "zero" || s.Classes[9] != "nine" {
		t.Fatalf("name %q, classes %v", s.Name, s.Classes)
	}
	for _, sp := range []struct {
		name string
		im   Images
		n    int
		// The first label of each split and the class counts of the
		// training split are those published for MNIST.
		first uint8
	}{{"train", s.Train, 60000, 5}, {"test", s.Test, 10000, 7}} {
		im := sp.im
		if im.N != sp.n || im.H != 28 || im.W != 28 || len(im.Pixels) != sp.n*784 || len(im.Labels) != sp.n {
			t.Fatalf("%s: N=%d H=%d W=%d, %d pixels, %d labels", sp.name, im.N, im.H, im.W, len(im.Pixels), len(im.Labels))
		}
		if im.Labels[0] != sp.first {
			t.Errorf("%s: first label %d, want %d", sp.name, im.Labels[0], sp.first)
		}
	}
	var counts [10]int
	for _, l := range s.Train.Labels {
		counts[l]++
	}
	if want := [10]int{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949}; counts != want {
		t.Errorf("training class counts %v, want %v", counts, want)
	}
	// A digit has ink: the first training image (a 5) has between 100 and
	// 250 non-zero pixels of 784, and its border row is blank.
	img := s.Train.Image(0)
	ink := 0
	for _, p := range img {
		if p > 0 {
			ink++
		}
	}
	if ink < 100 || ink > 250 {
		t.Errorf("first image has %d inked pixels", ink)
	}
	for _, p := range img[:28] {
		if p != 0 {
			t.Fatal("first row of the first image is not blank")
		}
	}
}

// writeSet writes a small idx data set into dir: nTrain and nTest images of
// h×w with labels i mod classes, gzipped when zip is set.
func writeSet(t *testing.T, dir string, nTrain, nTest, h, w, classes int, zip bool) {
	t.Helper()
	write := func(name string, dims []int, data []byte) {
		b := encodeIDX(t, dims, data)
		if zip {
			b, name = gz(t, b), name+".gz"
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	labels := func(n int) []byte {
		l := make([]byte, n)
		for i := range l {
			l[i] = byte(i % classes)
		}
		return l
	}
	write(trainImagesFile, []int{nTrain, h, w}, seq(nTrain*h*w))
	write(trainLabelsFile, []int{nTrain}, labels(nTrain))
	write(testImagesFile, []int{nTest, h, w}, seq(nTest*h*w))
	write(testLabelsFile, []int{nTest}, labels(nTest))
}

func writeClasses(t *testing.T, path string, names ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadIDX(t *testing.T) {
	for _, zip := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "shapes")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeSet(t, dir, 12, 5, 4, 3, 3, zip)
		writeClasses(t, filepath.Join(dir, "classes.txt"), "circle", "square", "eye")
		s, err := Load("idx:"+dir, "")
		if err != nil {
			t.Fatal(err)
		}
		if s.Name != "shapes" || s.Train.N != 12 || s.Test.N != 5 || s.Train.H != 4 || s.Train.W != 3 ||
			strings.Join(s.Classes, ",") != "circle,square,eye" || s.Train.Labels[4] != 1 {
			t.Fatalf("zip=%v: got %+v", zip, s)
		}
		// An explicit classes file wins over DIR/classes.txt.
		other := filepath.Join(t.TempDir(), "names")
		writeClasses(t, other, "a", "b", "c", "d")
		if s, err = Load("idx:"+dir, other); err != nil || len(s.Classes) != 4 {
			t.Fatalf("with classes file: %v, %v", s, err)
		}
	}
}

func TestLoadMNISTClassesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "digits.txt")
	writeClasses(t, p, "0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
	s, err := Load("mnist", p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Classes[7] != "7" {
		t.Fatalf("classes %v", s.Classes)
	}
}

func TestLoadErrors(t *testing.T) {
	type setup func(t *testing.T, dir string) (spec, classes string)
	okSet := func(t *testing.T, dir string) {
		writeSet(t, dir, 6, 3, 2, 2, 3, true)
		writeClasses(t, filepath.Join(dir, "classes.txt"), "a", "b", "c")
	}
	for _, tc := range []struct {
		name  string
		setup setup
		want  []string
	}{
		{"unknown spec", func(t *testing.T, dir string) (string, string) { return "cifar10", "" },
			[]string{`unknown data set "cifar10"`, `"mnist"`, `"idx:DIR"`}},
		{"empty dir", func(t *testing.T, dir string) (string, string) { return "idx:", "" },
			[]string{"names no directory"}},
		{"no such dir", func(t *testing.T, dir string) (string, string) { return "idx:" + dir + "/nope", "" },
			[]string{"nope: no such file or directory"}},
		{"not a dir", func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "f")
			writeClasses(t, p, "x")
			return "idx:" + p, ""
		}, []string{"f is not a directory"}},
		{"missing file", func(t *testing.T, dir string) (string, string) {
			okSet(t, dir)
			os.Remove(filepath.Join(dir, testLabelsFile+".gz"))
			return "idx:" + dir, ""
		}, []string{"missing t10k-labels-idx1-ubyte (or t10k-labels-idx1-ubyte.gz)", "train-images-idx3-ubyte, train-labels-idx1-ubyte"}},
		{"count mismatch", func(t *testing.T, dir string) (string, string) {
			okSet(t, dir)
			os.WriteFile(filepath.Join(dir, trainLabelsFile+".gz"), gz(t, encodeIDX(t, []int{5}, make([]byte, 5))), 0o644)
			return "idx:" + dir, ""
		}, []string{"train-images-idx3-ubyte has 6 images but train-labels-idx1-ubyte has 5 labels"}},
		{"size mismatch", func(t *testing.T, dir string) (string, string) {
			okSet(t, dir)
			os.WriteFile(filepath.Join(dir, testImagesFile+".gz"), gz(t, encodeIDX(t, []int{3, 2, 3}, make([]byte, 18))), 0o644)
			return "idx:" + dir, ""
		}, []string{"training images are 2×2 but test images are 2×3"}},
		{"labels 2-D", func(t *testing.T, dir string) (string, string) {
			okSet(t, dir)
			os.WriteFile(filepath.Join(dir, trainLabelsFile+".gz"), gz(t, encodeIDX(t, []int{6, 1}, make([]byte, 6))), 0o644)
			return "idx:" + dir, ""
		}, []string{"train-labels-idx1-ubyte has shape 6×1: want 1 dimension"}},
		{"corrupt file", func(t *testing.T, dir string) (string, string) {
			okSet(t, dir)
			os.WriteFile(filepath.Join(dir, trainImagesFile+".gz"), []byte{0x1f, 0x8b, 1, 2, 3}, 0o644)
			return "idx:" + dir, ""
		}, []string{filepath.Join("train-images-idx3-ubyte.gz") + ": idx: gzip"}},
		{"no classes.txt", func(t *testing.T, dir string) (string, string) {
			okSet(t, dir)
			os.Remove(filepath.Join(dir, "classes.txt"))
			return "idx:" + dir, ""
		}, []string{"no class names: write " + "", "classes.txt (one name per line, in label order)"}},
		{"too few classes", func(t *testing.T, dir string) (string, string) {
			okSet(t, dir)
			writeClasses(t, filepath.Join(dir, "classes.txt"), "a", "b")
			return "idx:" + dir, ""
		}, []string{"label 2 of sample 2 has no class name", "lists only 2 (labels 0 to 1); add the missing names to", "classes.txt"}},
		{"duplicate classes", func(t *testing.T, dir string) (string, string) {
			okSet(t, dir)
			writeClasses(t, filepath.Join(dir, "classes.txt"), "a", "b", "a")
			return "idx:" + dir, ""
		}, []string{`class name "a" appears for label 0 and label 2`}},
		{"empty class line", func(t *testing.T, dir string) (string, string) {
			okSet(t, dir)
			writeClasses(t, filepath.Join(dir, "classes.txt"), "a", "", "c")
			return "idx:" + dir, ""
		}, []string{"line 2 is empty"}},
		{"missing classes file", func(t *testing.T, dir string) (string, string) {
			return "mnist", filepath.Join(dir, "nope.txt")
		}, []string{"nope.txt"}},
		{"mnist too few classes", func(t *testing.T, dir string) (string, string) {
			p := filepath.Join(dir, "c.txt")
			writeClasses(t, p, "0", "1", "2")
			return "mnist", p
		}, []string{"has no class name: ", "c.txt lists only 3 (labels 0 to 2); add the missing names to ", "c.txt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, classes := tc.setup(t, t.TempDir())
			s, err := Load(spec, classes)
			if err == nil {
				t.Fatalf("no error; got %+v", s.Classes)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

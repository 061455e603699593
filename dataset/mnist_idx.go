package dataset

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// WriteMNISTIDX writes the first nTrain training and nTest test images of the
// embedded MNIST, with their labels and class names, as an idx data set
// into dir (created if needed); --data idx:DIR loads it.
func WriteMNISTIDX(dir string, nTrain, nTest int) error {
	set, err := MNIST()
	if err != nil {
		return err
	}
	if nTrain < 1 || nTrain > set.Train.N || nTest < 1 || nTest > set.Test.N {
		return fmt.Errorf("write MNIST as idx: %d training and %d test images asked, MNIST has %d and %d", nTrain, nTest, set.Train.N, set.Test.N)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write MNIST as idx: %w", err)
	}
	p := set.Train.H * set.Train.W
	for _, f := range []struct {
		name string
		dims []int
		data []byte
	}{
		{"train-images-idx3-ubyte", []int{nTrain, set.Train.H, set.Train.W}, set.Train.Pixels[:nTrain*p]},
		{"train-labels-idx1-ubyte", []int{nTrain}, set.Train.Labels[:nTrain]},
		{"t10k-images-idx3-ubyte", []int{nTest, set.Test.H, set.Test.W}, set.Test.Pixels[:nTest*p]},
		{"t10k-labels-idx1-ubyte", []int{nTest}, set.Test.Labels[:nTest]},
	} {
		var b bytes.Buffer
		if err := WriteIDX(&b, f.dims, f.data); err != nil {
			return fmt.Errorf("write MNIST as idx: %s: %w", f.name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write MNIST as idx: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "classes.txt"), []byte(strings.Join(set.Classes, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("write MNIST as idx: %w", err)
	}
	return nil
}

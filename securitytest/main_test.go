package securitytest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infonce/infonce/dataset"
)

// dataDir holds a small idx data set (a slice of the embedded MNIST), so
// that every worker of every run loads it quickly.
var dataDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "securitytest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	dataDir = filepath.Join(dir, "data")
	if err := writeData(dataDir, 1024, 128); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// writeData writes the first nTrain training and nTest test images of the
// embedded MNIST as idx files into dir.
func writeData(dir string, nTrain, nTest int) error {
	set, err := dataset.MNIST()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
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
		if err := dataset.WriteIDX(&b, f.dims, f.data); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "classes.txt"), []byte(strings.Join(set.Classes, "\n")+"\n"), 0o644)
}

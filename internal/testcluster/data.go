package testcluster

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/infonce/infonce/dataset"
)

// WriteMNIST writes the first nTrain training and nTest test images of the
// embedded MNIST, with their labels and class names, as an idx data set
// into dir (created if needed); --data idx:DIR loads it.
func WriteMNIST(dir string, nTrain, nTest int) error {
	set, err := dataset.MNIST()
	if err != nil {
		return fmt.Errorf("testcluster: %w", err)
	}
	if nTrain < 1 || nTrain > set.Train.N || nTest < 1 || nTest > set.Test.N {
		return fmt.Errorf("testcluster: %d training and %d test images asked, MNIST has %d and %d", nTrain, nTest, set.Train.N, set.Test.N)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("testcluster: %w", err)
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
			return fmt.Errorf("testcluster: %s: %w", f.name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("testcluster: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "classes.txt"), []byte(strings.Join(set.Classes, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("testcluster: %w", err)
	}
	return nil
}

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago (the
// kernel picked it and it was released), for a process that must be told
// its port in advance.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testcluster: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

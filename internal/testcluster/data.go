package testcluster

import (
	"fmt"
	"net"

	"github.com/infonce/infonce/dataset"
)

// WriteMNIST writes the first nTrain training and nTest test images of the
// embedded MNIST, with their labels and class names, as an idx data set
// into dir (created if needed); --data idx:DIR loads it.
func WriteMNIST(dir string, nTrain, nTest int) error {
	if err := dataset.WriteMNISTIDX(dir, nTrain, nTest); err != nil {
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

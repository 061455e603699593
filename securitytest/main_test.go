package securitytest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/infonce/infonce/internal/testcluster"
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
	if err := testcluster.WriteMNIST(dataDir, 1024, 128); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

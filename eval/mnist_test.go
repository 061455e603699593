package eval

import (
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// readIDX reads a gzip-compressed IDX file of unsigned bytes (the MNIST
// format): magic 0x000008NN, NN dimensions, then the bytes.
func readIDX(path string) (data []byte, dims []int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	var magic uint32
	if err := binary.Read(zr, binary.BigEndian, &magic); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if magic>>8 != 0x08 {
		return nil, nil, fmt.Errorf("%s: magic %#x is not an IDX file of unsigned bytes", path, magic)
	}
	size := 1
	for range magic & 0xff {
		var v uint32
		if err := binary.Read(zr, binary.BigEndian, &v); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		dims = append(dims, int(v))
		size *= int(v)
	}
	data = make([]byte, size)
	if _, err := io.ReadFull(zr, data); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, dims, nil
}

func loadMNIST(t testing.TB, dir, prefix string) (x []float32, y []int) {
	t.Helper()
	img, dims, err := readIDX(filepath.Join(dir, prefix+"-images-idx3-ubyte.gz"))
	if err != nil {
		t.Fatal(err)
	}
	lab, _, err := readIDX(filepath.Join(dir, prefix+"-labels-idx1-ubyte.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dims) != 3 || dims[0] != len(lab) {
		t.Fatalf("%s: images %v for %d labels", prefix, dims, len(lab))
	}
	x = make([]float32, len(img))
	for i, v := range img {
		x[i] = float32(v) / 255
	}
	y = make([]int, len(lab))
	for i, v := range lab {
		y[i] = int(v)
	}
	return x, y
}

// TestLinearProbeMNIST checks the accuracy budget of the probe on raw
// MNIST pixels: 60,000×784 training images, 10,000 test images. It reads
// the copy of MNIST the binary embeds (dataset/mnist), or the directory
// INFONCE_MNIST_DIR names.
func TestLinearProbeMNIST(t *testing.T) {
	dir := os.Getenv("INFONCE_MNIST_DIR")
	if dir == "" {
		dir = filepath.Join("..", "dataset", "mnist")
	}
	if testing.Short() {
		t.Skip("MNIST probe takes several seconds")
	}
	trX, trY := loadMNIST(t, dir, "train")
	teX, teY := loadMNIST(t, dir, "t10k")
	cfg := DefaultProbeConfig()
	start := time.Now()
	acc, err := LinearProbe(trX, trY, teX, teY, 784, 10, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v: accuracy %.4f in %v", cfg, acc, time.Since(start))
	if acc < 0.91 {
		t.Errorf("MNIST linear probe accuracy %.4f, want ≥ 0.91", acc)
	}
}

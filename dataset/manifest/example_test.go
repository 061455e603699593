package manifest_test

import (
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"

	"github.com/infonce/infonce/dataset"
	_ "github.com/infonce/infonce/dataset/manifest"
)

// Open an OpenCLIP-style TSV manifest whose paths are relative to it.
func Example() {
	dir, err := os.MkdirTemp("", "manifest-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	f, err := os.Create(filepath.Join(dir, "cat.png"))
	if err != nil {
		fmt.Println(err)
		return
	}
	png.Encode(f, image.NewRGBA(image.Rect(0, 0, 8, 6)))
	f.Close()
	manifest := "filepath\ttitle\ncat.png\ta cat on a mat\n"
	os.WriteFile(filepath.Join(dir, "train.tsv"), []byte(manifest), 0o644)

	src, err := dataset.Open("csv:"+filepath.Join(dir, "train.tsv"), dataset.OpenOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	var s dataset.Sample
	if err := src.Sample(context.Background(), 0, &s); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d×%d %q %v\n", s.Image.W, s.Image.H, s.Text, src.Fields())
	// Output: 8×6 "a cat on a mat" [image text]
}

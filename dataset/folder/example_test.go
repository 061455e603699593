package folder_test

import (
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"

	"github.com/infonce/infonce/dataset"
	_ "github.com/infonce/infonce/dataset/folder"
)

// Open an image folder and read one sample with its class and caption.
func Example() {
	dir, err := os.MkdirTemp("", "folder-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	for _, class := range []string{"red_fox", "owl"} {
		os.MkdirAll(filepath.Join(dir, class), 0o755)
		f, err := os.Create(filepath.Join(dir, class, "0.png"))
		if err != nil {
			fmt.Println(err)
			return
		}
		png.Encode(f, image.NewGray(image.Rect(0, 0, 4, 4)))
		f.Close()
	}
	src, err := dataset.Open("folder:"+dir, dataset.OpenOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	var s dataset.Sample
	if err := src.Sample(context.Background(), 1, &s); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(src.Len(), s.Label, s.Image.H, s.Image.W, s.Image.C)
	// Output: 2 1 4 4 1
}

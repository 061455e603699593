package wds_test

import (
	"context"
	"fmt"
	"os"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/wds"
)

// Write three captioned grey images into shards of two samples, then read
// them back.
func ExampleWriter() {
	dir, err := os.MkdirTemp("", "wds-write-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	w, err := wds.NewWriter(dir, wds.WriterOptions{ShardSize: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	for i := range 3 {
		s := dataset.Sample{Label: -1, Episode: -1, Task: -1,
			Image: dataset.Picture{H: 1, W: 2, C: 1, Pix: []byte{byte(i), 255}},
			Text:  fmt.Sprintf("caption %d", i)}
		m, err := wds.Members(&s)
		if err == nil {
			err = w.Write(fmt.Sprintf("%06d", i), m)
		}
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	if err := w.Close(); err != nil {
		fmt.Println(err)
		return
	}
	src, err := wds.Open(w.Pattern(), dataset.OpenOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	var s dataset.Sample
	if err := src.Sample(context.Background(), 2, &s); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(w.Shards()), src.Len(), s.Text, s.Image.Pix)
	// Output:
	// 2 3 caption 2 [2 255]
}

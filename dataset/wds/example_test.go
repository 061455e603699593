package wds_test

import (
	"archive/tar"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/infonce/infonce/dataset"
	_ "github.com/infonce/infonce/dataset/wds"
)

// Open two shards of captioned samples through dataset.Open.
func Example() {
	dir, err := os.MkdirTemp("", "wds-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	for shard := range 2 {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("train-%03d.tar", shard)))
		if err != nil {
			fmt.Println(err)
			return
		}
		tw := tar.NewWriter(f)
		for i := range 2 {
			key := fmt.Sprintf("%06d", shard*2+i)
			text := fmt.Sprintf("caption %d", shard*2+i)
			tw.WriteHeader(&tar.Header{Name: key + ".txt", Mode: 0o644, Size: int64(len(text))})
			tw.Write([]byte(text))
		}
		tw.Close()
		f.Close()
	}
	src, err := dataset.Open("wds:"+filepath.Join(dir, "train-{000..001}.tar"), dataset.OpenOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	var s dataset.Sample
	for _, i := range []int{3, 0} {
		if err := src.Sample(context.Background(), i, &s); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(i, s.Text)
	}
	fmt.Println(src.Len(), src.Fields())
	// Output:
	// 3 caption 3
	// 0 caption 0
	// 4 [text]
}

package dataset_test

import (
	"context"
	"fmt"

	"github.com/infonce/infonce/dataset"
)

// Read two samples of a synthetic source and make the two SimCLR views of
// one and its evaluation view.
func ExampleOpen() {
	src, err := dataset.Open("synthetic:100", dataset.OpenOptions{Seed: 1, Synthetic: dataset.SyntheticConfig{H: 48, W: 64}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(src.Name(), src.Len(), src.Fields())
	var s dataset.Sample
	if err := src.Sample(context.Background(), 7, &s); err != nil {
		fmt.Println(err)
		return
	}
	train, eval := dataset.SimCLRViewConfig(32), dataset.EvalViewConfig(32)
	v0 := make([]float32, train.ViewLen())
	v1 := make([]float32, train.ViewLen())
	e := make([]float32, eval.ViewLen())
	const seed, epoch = 1, 0
	for _, err := range []error{
		dataset.View(train, s.Image, seed, epoch, s.Index, 0, v0),
		dataset.View(train, s.Image, seed, epoch, s.Index, 1, v1),
		dataset.View(eval, s.Image, seed, epoch, s.Index, 0, e),
	} {
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	same := true
	for i := range v0 {
		same = same && v0[i] == v1[i]
	}
	fmt.Printf("image %d×%d×%d, views of %d floats, views equal: %v\n", s.Image.H, s.Image.W, s.Image.C, len(v0), same)
	// Output:
	// synthetic:100 100 [image text label]
	// image 48×64×3, views of 3072 floats, views equal: false
}

// A corrupt file is a *BadSample with a reason to count.
func ExampleDecodeImage() {
	_, err := dataset.DecodeImage([]byte("not an image"), "shard-3/000017", nil)
	fmt.Println(err)
	// Output: bad sample shard-3/000017 (corrupt-image): image: unknown format
}

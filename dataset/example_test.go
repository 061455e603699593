package dataset_test

import (
	"bytes"
	"fmt"

	"github.com/infonce/infonce/dataset"
)

// Two ranks share each global batch of 4 out of 10 samples; the batches
// are the same whatever the number of ranks.
func ExampleSampler() {
	s := dataset.Sampler{Seed: 1, N: 10, B: 4}
	if err := s.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("steps per epoch:", s.StepsPerEpoch())
	var idx []int
	for step := range int64(3) {
		var epoch int
		epoch, idx = s.Batch(step, idx)
		lo, hi := dataset.Shard(s.B, 2, 1)
		fmt.Printf("step %d epoch %d: batch %v, rank 1 takes %v\n", step, epoch, idx, idx[lo:hi])
	}
	fmt.Println(dataset.Sampler{N: 300, B: 512}.Validate())
	// Output:
	// steps per epoch: 2
	// step 0 epoch 0: batch [6 9 2 1], rank 1 takes [2 1]
	// step 1 epoch 0: batch [3 8 7 4], rank 1 takes [7 4]
	// step 2 epoch 1: batch [8 2 4 7], rank 1 takes [4 7]
	// dataset: sampler: --batch 512 is larger than the data set (300 samples): use --batch 300 or less
}

func ExampleShard() {
	for k := range 3 {
		lo, hi := dataset.Shard(8, 3, k)
		fmt.Printf("rank %d: rows [%d, %d)\n", k, lo, hi)
	}
	fmt.Println(dataset.Counts(8, 3))
	// Output:
	// rank 0: rows [0, 3)
	// rank 1: rows [3, 6)
	// rank 2: rows [6, 8)
	// [3 3 2]
}

func ExampleCaptioner() {
	set := &dataset.Set{Name: "mnist", Classes: []string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}}
	c := dataset.NewCaptioner(set)
	for tmpl := range 3 {
		fmt.Println(c.Text(7, tmpl))
	}
	tok := dataset.NewTokenizer(c.Corpus())
	ids := tok.Encode("A photo of the digit SEVEN, in ink!", nil)
	fmt.Print(len(ids), " tokens:")
	for _, id := range ids {
		fmt.Print(" ", tok.Word(id))
	}
	fmt.Println()
	fmt.Println(c.ID(7, 0) == c.ID(7, 0), c.ID(7, 0) == c.ID(7, 1))
	// Output:
	// a photo of the digit seven
	// a handwritten seven
	// an image of the number 7
	// 8 tokens: a photo of the digit seven [unk] [unk]
	// true false
}

func ExampleReadIDX() {
	var b bytes.Buffer
	if err := dataset.WriteIDX(&b, []int{2, 2, 3}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}); err != nil {
		fmt.Println(err)
		return
	}
	x, err := dataset.ReadIDX(&b)
	fmt.Println(x.Dims, x.Data, err)
	_, err = dataset.ReadIDX(bytes.NewReader([]byte{0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3}))
	fmt.Println(err)
	// Output:
	// [2 2 3] [1 2 3 4 5 6 7 8 9 10 11 12] <nil>
	// idx: truncated: header says 2×2×3 = 12 bytes, file has 3
}

func ExampleAugment() {
	img := make([]byte, 28*28)
	for y := 8; y < 20; y++ {
		for x := 12; x < 16; x++ {
			img[y*28+x] = 255 // a stroke
		}
	}
	v0 := make([]float32, len(img))
	v1 := make([]float32, len(img))
	cfg := dataset.DefaultAugConfig()
	// The two SimCLR views of sample 123 at step 9 of a run seeded 42.
	dataset.Augment(cfg, 42, 9, 123, 0, img, 28, 28, v0)
	dataset.Augment(cfg, 42, 9, 123, 1, img, 28, 28, v1)
	again := make([]float32, len(img))
	dataset.Augment(cfg, 42, 9, 123, 0, img, 28, 28, again)
	same := func(a, b []float32) bool {
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
		return true
	}
	fmt.Println("views differ:", !same(v0, v1))
	fmt.Println("a view is reproducible:", same(v0, again))
	// Output:
	// views differ: true
	// a view is reproducible: true
}

func ExampleLoad() {
	_, err := dataset.Load("cifar", "")
	fmt.Println(err)
	// Output:
	// dataset: unknown data set "cifar": want "mnist" (the embedded MNIST) or "idx:DIR" (a directory of idx files)
}

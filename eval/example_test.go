package eval_test

import (
	"fmt"

	"github.com/infonce/infonce/eval"
)

// Three images and their three captions in R²; image 2 is closer to caption
// 1 than to its own caption.
func Example() {
	img := []float32{
		1, 0,
		0, 1,
		0.6, 0.8,
	}
	txt := []float32{
		1, 0,
		0.6, 0.8,
		0, 1,
	}
	labels := []int{0, 1, 1}
	r := eval.Retrieval(img, txt, 3, 2, labels)
	fmt.Printf("image→text R@1 %.2f, mean rank %.2f, median rank %.0f, class R@1 %.2f\n",
		r.I2T.R1, r.I2T.MeanRank, r.I2T.MedianRank, r.ClassR1I2T)

	// Zero-shot: two classes, each described by two prompt templates.
	templ := []float32{
		1, 0, 0.8, 0.6, // class 0
		0, 1, 0.6, 0.8, // class 1
	}
	class := make([]float32, 2*2)
	eval.ClassEmbeddings(templ, 2, 2, 2, class)
	top1, _ := eval.ZeroShot(img, 3, 2, labels, class, 2)
	fmt.Printf("zero-shot top-1 %.2f\n", top1)

	align, uniform := eval.AlignmentUniformity(img, txt, 3, 2)
	fmt.Printf("alignment %.3f, uniformity %.3f\n", align, uniform)
	// Output:
	// image→text R@1 0.33, mean rank 1.67, median rank 2, class R@1 1.00
	// zero-shot top-1 1.00
	// alignment 0.267, uniformity -1.500
}

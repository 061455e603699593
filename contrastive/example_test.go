package contrastive_test

import (
	"context"
	"fmt"
	"math"

	"github.com/infonce/infonce/contrastive"
)

// One CLIP step on a single process: four image and four caption
// embeddings (unit vectors of dimension 2) with the initial temperature
// 0.07, so s = 1/0.07.
func ExampleCLIP() {
	u := []float64{1, 0, 0, 1, -1, 0, 0, -1}                   // images
	v := []float64{0.8, 0.6, -0.6, 0.8, -0.8, -0.6, 0.6, -0.8} // captions, rotated
	in := contrastive.CLIPInput[float64]{
		U: u, V: v, D: 2, Counts: []int{4}, Scale: 1 / 0.07,
		DU: make([]float64, len(u)), DV: make([]float64, len(v)),
	}
	var clip contrastive.CLIP[float64]
	res, err := clip.Compute(context.Background(), contrastive.Single{}, in)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("loss %.4f (chance ln 4 = %.4f), dL/dt %.4f\n", res.Loss, math.Log(4), res.DT)
	fmt.Printf("dL/du_0 = [%.4f %.4f]\n", in.DU[0], in.DU[1])
	// Output:
	// loss 0.0558 (chance ln 4 = 1.3863), dL/dt -0.1552
	// dL/du_0 = [-0.0388 -0.2716]
}

// Two in-memory views that carry no information (every view equal): each
// anchor cannot tell its positive from the 2N−2 negatives, so NT-Xent sits
// at chance, ln(2N−1).
func ExampleNTXent() {
	const n, d = 3, 2
	z := []float64{0.6, 0.8, 0.6, 0.8, 0.6, 0.8}
	in := contrastive.NTXentInput[float64]{
		Z1: z, Z2: z, D: d, Counts: []int{n}, Scale: 1 / 0.5,
		DZ1: make([]float64, n*d), DZ2: make([]float64, n*d),
	}
	var loss contrastive.NTXent[float64]
	res, err := loss.Compute(context.Background(), contrastive.Single{}, in)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("loss %.6f, ln 5 = %.6f\n", res.Loss, math.Log(5))
	// Output:
	// loss 1.609438, ln 5 = 1.609438
}

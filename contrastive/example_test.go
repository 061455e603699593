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

// The embeddings of ExampleCLIP at temperature 0.5 with reweighted
// negatives: hard-negative weights e^{β·x} give the closest negatives more
// weight, and the debiased estimator takes τ⁺·Pos out of the negatives'
// mass as the share of same-class samples among them (at temperature 0.07
// the positives are so far ahead that it would hit its floor e^{−s}).
func ExampleNegatives() {
	u := []float64{1, 0, 0, 1, -1, 0, 0, -1}
	v := []float64{0.8, 0.6, -0.6, 0.8, -0.8, -0.6, 0.6, -0.8}
	for _, g := range []contrastive.Negatives{{}, {Beta: 0.1}, {TauPlus: 0.05}, {Beta: 0.1, TauPlus: 0.05}} {
		in := contrastive.CLIPInput[float64]{
			U: u, V: v, D: 2, Counts: []int{4}, Scale: 1 / 0.5,
			DU: make([]float64, len(u)), DV: make([]float64, len(v)),
		}
		clip := contrastive.CLIP[float64]{Negatives: g}
		res, err := clip.Compute(context.Background(), contrastive.Single{}, in)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("β %.1f τ⁺ %.2f: loss %.4f\n", g.Beta, g.TauPlus, res.Loss)
	}
	// Output:
	// β 0.0 τ⁺ 0.00: loss 0.5720
	// β 0.1 τ⁺ 0.00: loss 0.6333
	// β 0.0 τ⁺ 0.05: loss 0.5036
	// β 0.1 τ⁺ 0.05: loss 0.5723
}

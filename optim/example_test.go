package optim_test

import (
	"fmt"

	"github.com/infonce/infonce/optim"
)

// Minimise f(w) = ½‖w − w*‖² with AdamW under a warm-up + cosine schedule;
// the bias is a NoDecay tensor, so weight decay leaves it alone.
func Example() {
	target := []float32{1, -2, 0.5} // w*; the last element is a bias
	groups := []optim.Group{
		{Name: "weight", Off: 0, Len: 2},
		{Name: "bias", Off: 2, Len: 1, NoDecay: true},
	}
	opt, err := optim.New[float32]("adamw", len(target), groups, 0.01)
	if err != nil {
		fmt.Println(err)
		return
	}
	sched := optim.WarmupCosine{Base: 0.1, Min: 0, Warmup: 10, Total: 500}
	w := make([]float32, len(target))
	g := make([]float32, len(target))
	for step := range int64(500) {
		for i := range w {
			g[i] = w[i] - target[i] // ∇f
		}
		optim.ClipGlobalNorm(g, 1)
		if err := opt.Step(w, g, float32(sched.At(step))); err != nil {
			fmt.Println(err)
			return
		}
	}
	fmt.Printf("steps %d, w = [%.2f %.2f %.2f]\n", opt.StepCount(), w[0], w[1], w[2])
	// Output: steps 500, w = [1.00 -2.00 0.50]
}

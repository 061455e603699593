package model_test

import (
	"fmt"
	"math"

	"github.com/infonce/infonce/model"
)

// A CLIP-style pair of towers: encode two images and two captions, and push a
// gradient back into the flat gradient buffer.
func Example() {
	cfg := model.DefaultConfig()
	cfg.TextVocab = 1000
	m, err := model.New[float32](cfg, 42)
	if err != nil {
		fmt.Println(err)
		return
	}
	const b = 2
	x := make([]float32, b*cfg.ImageIn) // two 28×28 images, flattened
	for i := range x {
		x[i] = float32(i%28) / 28
	}
	u, err := m.Image.Forward(model.Rows(x, b))
	if err != nil {
		fmt.Println(err)
		return
	}
	// Captions "3 17 256" and "9 9": bag i starts at offsets[i].
	v, err := m.Text.Forward(model.Bags[float32]([]int32{3, 17, 256, 9, 9}, []int32{0, 3}, b))
	if err != nil {
		fmt.Println(err)
		return
	}
	var norm float64
	for _, e := range u[:cfg.Dim] {
		norm += float64(e) * float64(e)
	}
	fmt.Printf("%d parameters, logit scale %.2f\n", len(m.P.W), m.Scale())
	fmt.Printf("u: %d×%d, ‖u_0‖ = %.4f; v: %d×%d; features %d×%d\n",
		b, len(u)/b, math.Sqrt(norm), b, len(v)/b, b, len(m.Image.Features())/b)

	// dL/du for L = u_0 · v_0 is v_0 on row 0 and 0 on row 1.
	dU := make([]float32, b*cfg.Dim)
	copy(dU, v[:cfg.Dim])
	m.P.ZeroGrad()
	if err := m.Image.Backward(dU); err != nil {
		fmt.Println(err)
		return
	}
	proj, _ := m.P.Lookup("image.proj.weight")
	_, g := m.P.View(proj)
	nonzero := 0
	for _, e := range g {
		if e != 0 {
			nonzero++
		}
	}
	// Row j of ∂L/∂W_proj is (∂L/∂z)_j h_Lᵀ: zero where ReLU zeroed h_L.
	fmt.Printf("image.proj.weight: %d of %d gradients nonzero\n", nonzero, len(g))
	// Output:
	// 822145 parameters, logit scale 14.29
	// u: 2×64, ‖u_0‖ = 1.0000; v: 2×64; features 2×256
	// image.proj.weight: 8256 of 16384 gradients nonzero
}

package safetensors_test

import (
	"bytes"
	"fmt"

	"github.com/infonce/infonce/internal/safetensors"
)

func Example() {
	var buf bytes.Buffer
	err := safetensors.Write(&buf, []safetensors.Tensor{
		safetensors.FromFloat32("proj.weight", []int{2, 2}, []float32{1, 0, 0, 1}),
		safetensors.FromFloat32("proj.bias", []int{2}, []float32{0.5, -0.5}),
	}, map[string]string{"format": "pt"})
	if err != nil {
		fmt.Println(err)
		return
	}
	f, err := safetensors.Decode(buf.Bytes())
	if err != nil {
		fmt.Println(err)
		return
	}
	b, _ := f.Get("proj.bias")
	v, _ := b.Float32()
	fmt.Println(f.Names(), b.Shape, v, f.Metadata["format"])
	// Output: [proj.weight proj.bias] [2] [0.5 -0.5] pt
}

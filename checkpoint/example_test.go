package checkpoint_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/infonce/infonce/checkpoint"
)

// Save the parameters and optimizer state after a step, then load the latest
// checkpoint back as a restarting run would.
func Example() {
	root, err := os.MkdirTemp("", "checkpoint-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	ctx := context.Background()
	store := &checkpoint.Store{Root: root, Keep: 2}

	params := []float32{0.5, -1.25, 3}
	adamM := []float32{0.01, 0, -0.02}
	for step := int64(1); step <= 3; step++ {
		m := checkpoint.Manifest{
			Step:          step,
			SamplerCursor: step + 1,
			CreatedUnix:   1.8e9,
			Config:        json.RawMessage(`{"objective":"clip","batch":256}`),
			RNG:           map[string]uint64{"seed": 42},
		}
		blobs := []checkpoint.Blob{
			{Name: "params", Data: checkpoint.Float32Bytes(params)},
			{Name: "adam_m", Data: checkpoint.Float32Bytes(adamM)},
		}
		if _, err := store.Save(ctx, m, blobs); err != nil {
			log.Fatal(err)
		}
		params[0] += 1
	}

	dirs, _ := store.List()
	for _, d := range dirs {
		fmt.Println(filepath.Base(d))
	}
	c, err := store.LoadLatest(ctx)
	if err != nil {
		log.Fatal(err)
	}
	raw, _ := c.Blob("params")
	p, _ := checkpoint.BytesFloat32(raw)
	fmt.Println("step", c.Manifest.Step, "cursor", c.Manifest.SamplerCursor, "params", p)
	fmt.Println("problems:", checkpoint.Verify(c.Dir))
	// Output:
	// step-000000000003
	// step-000000000002
	// step 3 cursor 4 params [2.5 -1.25 3]
	// problems: []
}

package rlds_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/rlds"
	"github.com/infonce/infonce/dataset/tfrecord"
)

// Write a one-shard RLDS folder of two episodes and read a step of the
// second through dataset.Open.
func Example() {
	dir, err := os.MkdirTemp("", "rlds-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "features.json"), rlds.FeaturesJSON(rlds.Layout{Action: 2, Instruction: true}), 0o644)
	var buf bytes.Buffer
	w := tfrecord.NewWriter(&buf)
	for e, T := range []int{2, 3} {
		var steps []rlds.Step
		for t := range T {
			steps = append(steps, rlds.Step{Instruction: fmt.Sprintf("push block %d", e), Action: []float32{float32(t), -1}})
		}
		w.Write(rlds.EpisodeExample(steps).Marshal())
	}
	os.WriteFile(filepath.Join(dir, "toy-train.tfrecord-00000-of-00001"), buf.Bytes(), 0o644)

	src, err := dataset.Open("rlds:"+dir, dataset.OpenOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	var s dataset.Sample
	if err := src.Sample(context.Background(), 4, &s); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(src.Len(), s.Episode, s.Step, s.EpisodeLen, s.Text, s.Action)
	// Output: 5 1 2 3 push block 1 [2 -1]
}

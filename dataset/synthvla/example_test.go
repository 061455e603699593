package synthvla_test

import (
	"context"
	"fmt"
	"os"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/synthvla"
	_ "github.com/infonce/infonce/dataset/wds"
)

// Generate a small data set as WebDataset shards and read a step of its
// validation split back through dataset.Open.
func ExampleGenerate() {
	dir, err := os.MkdirTemp("", "synthvla-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	sum, err := synthvla.Generate(context.Background(), synthvla.Options{Episodes: 8, Out: dir, Seed: 1, ValFraction: 0.25})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sum.Splits[synthvla.Train].Episodes, sum.Splits[synthvla.Val].Episodes, sum.HeldOut[0])
	val := sum.Splits[synthvla.Val]
	src, err := dataset.Open(val.Spec, dataset.OpenOptions{CacheDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	var s dataset.Sample
	if err := src.Sample(context.Background(), 0, &s); err != nil {
		fmt.Println(err)
		return
	}
	task, _ := synthvla.TaskOf(s.Task)
	fmt.Printf("%d×%d, episode %d step %d of %d\n%q\n%s\n", s.Image.H, s.Image.W, s.Episode, s.Step, s.EpisodeLen, s.Text, task)
	fmt.Println(s.ActionShape, s.Action[6])
	// Output:
	// 6 2 red star
	// 64×64, episode 0 step 0 of 26
	// "stack the red triangle on the orange block"
	// stack(red triangle, orange square)
	// [7] 0
}

// One episode in memory: its task, instruction and frames.
func ExampleNewEpisode() {
	e, err := synthvla.NewEpisode(1, synthvla.Train, 0, 64)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(e.Task, e.Task.ID())
	fmt.Println(e.Instruction)
	fmt.Println(len(e.Frames), len(e.Frames[0].Image))
	fmt.Println(e.Task.Holds(e.Initial(), e.Final(), e.XI, e.YI))
	// Output:
	// lift(orange cross) 11951
	// raise the orange cross into the air
	// 20 12288
	// true
}

package allreduce_test

import (
	"context"
	"fmt"

	"github.com/infonce/infonce/allreduce"
)

func ExampleNewMemRings() {
	rings, err := allreduce.NewMemRings(3, allreduce.Config{JobID: "example"})
	if err != nil {
		panic(err)
	}
	defer func() {
		for _, r := range rings {
			r.Close()
		}
	}()
	results := make(chan string, len(rings))
	for _, r := range rings {
		go func() {
			grad := []float32{float32(r.Rank()), 1}
			if err := r.AllReduce(context.Background(), grad); err != nil {
				results <- err.Error()
				return
			}
			results <- fmt.Sprint(grad)
		}()
	}
	for range rings {
		fmt.Println(<-results)
	}
	// Output:
	// [3 3]
	// [3 3]
	// [3 3]
}

package coordinator_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/infonce/infonce/coordinator"
)

// A coordinator and one worker on loopback: the worker joins, trains in
// generation 1, reports its progress and the end of training, and leaves;
// Serve then returns by itself.
func Example() {
	cfg := coordinator.DefaultLocalConfig()
	cfg.JobID = "example"
	cfg.MinWorkers, cfg.MaxWorkers = 1, 1
	cfg.DisableGossip = true
	cfg.Token = "example-token"
	// Fixed worker ids for the output below; by default they carry a tag
	// of the coordinator's start time.
	cfg.WorkerIDPrefix = "w"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := coordinator.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background()) }()

	ctx := context.Background()
	c, err := coordinator.Dial(ctx, srv.Addr(), "example-token")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	id, err := c.Join(ctx, coordinator.JoinRequest{Name: "laptop", DataAddr: "127.0.0.1:7001",
		Fingerprint: coordinator.Fingerprint{"objective": "infonce", "batch": "256"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	a, err := c.NextAssignment(ctx, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s: generation %d, %s as rank %d of %d, start %v at step %d\n",
		id, a.Generation, a.Action, a.Rank, a.World, a.Start, a.StartStep)
	for step := int64(1); step <= 3; step++ {
		if newer, _ := c.Boundary(ctx, a.Generation, step-1); newer != a.Generation {
			fmt.Println("a new generation is waiting")
		}
		_ = c.Report(ctx, a.Generation, coordinator.Progress{Step: step, Loss: 5.5 - float64(step), SamplesPerSec: 512})
	}
	fmt.Printf("progress: step %d, loss %.1f\n", srv.Status().Progress.MaxStep, srv.Status().Progress.Loss)
	_ = c.Finish(ctx, a.Generation, 3)
	stop, _ := c.NextAssignment(ctx, a.Generation)
	fmt.Printf("generation %d: %s (%s)\n", stop.Generation, stop.Action, stop.Reason)
	_ = c.Leave(ctx, "done")
	fmt.Println("serve returned:", <-served)
	// Output:
	// w1: generation 1, run as rank 0 of 1, start fresh at step 0
	// progress: step 3, loss 2.5
	// generation 2: stop (training finished at step 3 (reported by w1))
	// serve returned: <nil>
}

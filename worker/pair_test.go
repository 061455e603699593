package worker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/infonce/infonce/coordinator"
)

// runPair runs spec with two workers in this process against an
// in-process coordinator of job and returns what each worker's RunMember
// returned and what the coordinator's Serve returned. Every worker gets
// the options of a quiet loopback member without shared memory; member
// adds worker i's own (its --out, faults, stall policy, observer).
func runPair(t *testing.T, job string, spec RunSpec, member func(i int, o *MemberOptions)) ([]*Summary, []error, error) {
	t.Helper()
	enc, err := EncodeRunSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	cc := coordinator.DefaultLocalConfig()
	cc.JobID, cc.MinWorkers, cc.MaxWorkers = job, 2, 2
	cc.RunConfig, cc.Fingerprint, cc.Logger = enc, spec.Config.FingerprintFields(), quiet
	cc.DisableGossip, cc.StopGrace = true, 2*time.Second
	srv, err := coordinator.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	sums := make([]*Summary, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range sums {
		o := MemberOptions{
			Coordinator: srv.Addr(), Name: fmt.Sprintf("w%d", i), DataBind: "127.0.0.1:0",
			Logger: quiet, OpTimeout: 20 * time.Second, NoSharedMemory: true,
		}
		member(i, &o)
		wg.Go(func() { sums[i], errs[i] = RunMember(ctx, o) })
	}
	wg.Wait()
	cancel()
	return sums, errs, <-served
}

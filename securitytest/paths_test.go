package securitytest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infonce/infonce/coordinator"
	"github.com/infonce/infonce/worker"
)

// A run directory that comes from the coordinator and climbs out with
// ".." is refused by a worker without its own --out, before anything is
// written.
func TestWorkerRefusesClimbingRunDirectory(t *testing.T) {
	root := t.TempDir()
	outside := filepath.Join(root, "outside")
	for _, out := range []string{
		root + "/run/../outside",
		root + "/run/../../" + filepath.Base(root) + "/outside",
	} {
		t.Run(out, func(t *testing.T) {
			cfg := runConfig(out)
			spec, err := worker.EncodeRunSpec(worker.RunSpec{Config: cfg})
			if err != nil {
				t.Fatal(err)
			}
			cc := coordinator.DefaultLocalConfig()
			cc.JobID, cc.MinWorkers, cc.MaxWorkers = jobID, 1, 1
			cc.RunConfig, cc.Logger, cc.DisableGossip, cc.StopGrace = spec, quiet(), true, time.Second
			srv, err := coordinator.New(cc)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ctx) }()
			_, err = worker.RunMember(ctx, worker.MemberOptions{
				Coordinator: srv.Addr(), Name: "w", DataBind: "127.0.0.1:0", Logger: quiet(),
			})
			cancel()
			<-served
			if err == nil || !strings.Contains(err.Error(), "--out") || !strings.Contains(err.Error(), "..") {
				t.Fatalf("worker with run directory %q: %v, want a refusal naming --out", out, err)
			}
			if _, err := os.Stat(outside); !os.IsNotExist(err) {
				t.Fatalf("%s was created: %v", outside, err)
			}
		})
	}
}

package securitytest

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/infonce/infonce/coordinator"
	"github.com/infonce/infonce/internal/tlstest"
	"github.com/infonce/infonce/rundir"
	"github.com/infonce/infonce/worker"
)

const (
	jobID = "sec"
	steps = 100 // long enough that the intruders try while the workers train
)

// secrets are a cluster's credentials; zero fields are off.
type secrets struct {
	token     string
	gossipKey []byte
	ca        *tlstest.CA
	server    *tls.Config // every node serves this
	client    *tls.Config // every node dials with this
}

func newSecrets(t *testing.T, withTLS bool) secrets {
	s := secrets{token: "run-token", gossipKey: []byte("0123456789abcdef0123456789abcdef")}
	if withTLS {
		s.ca = tlstest.NewCA(t, "run CA")
		p := s.ca.Issue(t, "node")
		s.server, s.client = tlstest.ServerConfig(p, s.ca), tlstest.ClientConfig(p, s.ca)
	}
	return s
}

// runConfig is a small, fast training run on the embedded data.
func runConfig(out string) worker.Config {
	c := worker.DefaultConfig()
	c.Batch, c.ImageHidden, c.TextHidden, c.Dim = 32, []int{16}, 16, 8
	c.Steps, c.LogEvery, c.ChecksumEvery, c.Out = steps, 1, 5, out
	c.Data = "idx:" + dataDir
	return c
}

func quiet() *slog.Logger {
	if os.Getenv("SECURITYTEST_LOGS") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

// cluster is a running coordinator and its two workers.
type cluster struct {
	srv     *coordinator.Server
	sec     secrets
	out     string
	started chan struct{} // closed once both workers trained a step
}

// run trains a whole job with sec and returns the per-step losses.
// attack, when set, runs from the first trained step until the job ends
// (its context is then canceled).
func run(t *testing.T, sec secrets, attack func(ctx context.Context, c *cluster)) []float64 {
	t.Helper()
	start := time.Now()
	defer func() { t.Logf("run took %v", time.Since(start).Round(time.Millisecond)) }()
	out := t.TempDir()
	cfg := runConfig(out)
	spec, err := worker.EncodeRunSpec(worker.RunSpec{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	cc := coordinator.DefaultLocalConfig()
	cc.JobID, cc.MinWorkers, cc.MaxWorkers = jobID, 2, 2
	cc.RunConfig, cc.Fingerprint, cc.Logger = spec, cfg.FingerprintFields(), quiet()
	cc.Token, cc.GossipKey, cc.TLS = sec.token, sec.gossipKey, sec.server
	cc.StopGrace = 2 * time.Second
	srv, err := coordinator.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()

	c := &cluster{srv: srv, sec: sec, out: out, started: make(chan struct{})}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = worker.RunMember(ctx, worker.MemberOptions{
				Coordinator: srv.Addr(), Token: sec.token, Name: fmt.Sprintf("w%d", i),
				DataBind: "127.0.0.1:0", GossipBind: "127.0.0.1", GossipKey: sec.gossipKey,
				TLSServer: sec.server, TLSClient: sec.client,
				Out: out, Logger: quiet(), OpTimeout: 20 * time.Second,
			})
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	attackCtx, stopAttack := context.WithCancel(ctx)
	attacked := make(chan struct{})
	go func() {
		defer close(attacked)
		if attack == nil {
			return
		}
		if !waitStarted(attackCtx, srv) {
			return
		}
		attack(attackCtx, c)
	}()
	<-done
	stopAttack()
	<-attacked
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("coordinator: %v", err)
	}
	return losses(t, out)
}

// waitStarted waits until the run trained its first steps.
func waitStarted(ctx context.Context, srv *coordinator.Server) bool {
	for {
		if st := srv.Status(); st.Progress.MaxStep >= 1 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// losses reads the per-step losses of run's metrics.jsonl.
func losses(t *testing.T, run string) []float64 {
	t.Helper()
	ms, _, err := rundir.ReadMetrics(run)
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, m := range ms {
		out = append(out, m.Loss)
	}
	if len(out) != steps {
		t.Fatalf("%s: %d losses, want %d", rundir.MetricsPath(run), len(out), steps)
	}
	return out
}

// baseline returns the losses of an undisturbed run without any security
// (computed once): authentication and encryption must not change a
// single loss.
func baseline(t *testing.T) []float64 {
	baseOnce.Do(func() { baseLosses = run(t, secrets{}, nil) })
	if baseLosses == nil {
		t.Fatal("the undisturbed run failed")
	}
	return baseLosses
}

var (
	baseOnce   sync.Once
	baseLosses []float64
)

func sameLosses(t *testing.T, got, want []float64) {
	t.Helper()
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("step %d: loss %v, undisturbed run %v", i, got[i], want[i])
		}
	}
}

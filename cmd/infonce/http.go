package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync"

	"github.com/infonce/infonce/coordinator"
	"github.com/infonce/infonce/observe"
	"github.com/infonce/infonce/worker"
)

// The --http flag of train, coordinator and worker: an HTTP server of
// /metrics, /healthz and, on the coordinator, the status page.

const httpUsage = "serve /metrics and /healthz (and the coordinator's status page at /) on this host:port, e.g. :9090 (empty: off)"

// httpFlag binds --http for a command without coordinator flags.
func httpFlag(fs *flag.FlagSet) *string { return fs.String("http", "", httpUsage) }

// bindHTTP binds --http among the coordinator flags (train, coordinator).
func (c *coordinatorFlags) bindHTTP(fs *flag.FlagSet) { fs.StringVar(&c.http, "http", "", httpUsage) }

// startHTTP binds addr and serves e in the background until the returned
// stop, which waits for the server to finish. A stop request (ctx) does not
// end the server: the process still answers /healthz while it saves its
// last checkpoint.
func startHTTP(ctx context.Context, addr string, e observe.Endpoints, run func(context.Context) error, logger *slog.Logger) (stop func(), err error) {
	srv, err := observe.Listen(addr, observe.Handler(e))
	if err != nil {
		return nil, fmt.Errorf("--http %s: %w", addr, err)
	}
	logger.Info("serving http", "addr", srv.Addr(), "metrics", "/metrics", "health", "/healthz")
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(sctx); err != nil {
			logger.Warn("http", "err", err)
		}
	})
	if run != nil {
		wg.Go(func() {
			if err := run(sctx); err != nil && !errors.Is(err, context.Canceled) {
				logger.Warn("http", "err", err)
			}
		})
	}
	var once sync.Once
	return func() { once.Do(func() { cancel(); wg.Wait() }) }, nil
}

// serveWorkerMetrics starts --http for a training process (role "train" or
// "worker") and installs its observer in *obs. With addr empty it does
// nothing.
func serveWorkerMetrics(ctx context.Context, addr, role string, cfg *worker.Config, obs *worker.Observer, logger *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	reg := observe.NewRegistry()
	w, err := observe.NewWorker(reg, observe.WorkerOptions{Role: role})
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		w.RunConfigured(*cfg, 0)
	}
	stop, err = startHTTP(ctx, addr, observe.Endpoints{Gatherer: reg, Health: w.Health, Logger: logger}, nil, logger)
	if err != nil {
		return nil, err
	}
	*obs = w
	return stop, nil
}

// serveTrain starts --http for a one-process `infonce train`.
func (c *coordinatorFlags) serveTrain(ctx context.Context, cfg worker.Config, opt *worker.Options, logger *slog.Logger) (stop func(), err error) {
	return serveWorkerMetrics(ctx, c.http, "train", &cfg, &opt.Observer, logger)
}

// serveWorker starts --http for `infonce worker`.
func serveWorker(ctx context.Context, addr string, o *worker.MemberOptions, logger *slog.Logger) (stop func(), err error) {
	return serveWorkerMetrics(ctx, addr, "worker", nil, &o.Observer, logger)
}

// serveCoordinator starts --http for a coordinator: metrics, health and the
// status page of srv.
func (c *coordinatorFlags) serveCoordinator(ctx context.Context, srv *coordinator.Server, cfg worker.Config, logger *slog.Logger) (stop func(), err error) {
	if c.http == "" {
		return func() {}, nil
	}
	reg := observe.NewRegistry()
	co, err := observe.NewCoordinator(reg, srv, observe.CoordinatorOptions{Batch: cfg.Batch, RunDir: cfg.Out})
	if err != nil {
		return nil, err
	}
	e := observe.Endpoints{Gatherer: reg, Health: co.Health, Status: co, Logger: logger}
	return startHTTP(ctx, c.http, e, co.Run, logger)
}

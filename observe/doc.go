// Package observe makes a run of infonce visible while it trains and after
// it ends.
//
// While it trains, every process can serve HTTP (Serve, Listen):
//
//	/metrics   Prometheus text format, from a registry of the process's own
//	           (NewRegistry), never the global one
//	/healthz   200 with a JSON body {role, generation, step, ...} while the
//	           process serves; container health checks probe it
//	/          the coordinator's status page: the members table, the
//	           generation history, and the loss and throughput curves drawn
//	           as inline SVG (no script); it refreshes itself
//	/status.json  the same snapshot as JSON
//
// A worker's metrics come from its training loop through Worker, which
// implements worker.Observer: steps, samples, loss, logit scale s = exp(t),
// learning rate, gradient norm, a histogram per phase of the step-time
// breakdown, and the gradient all-reduce. The all-reduce figures follow the
// convention of the field (nccl-tests): for a buffer of S bytes reduced in
// time t over n ranks, the algorithm bandwidth is algbw = S/t and the bus
// bandwidth busbw = algbw · 2(n−1)/n, the share of the link a ring
// all-reduce actually uses. Here t is the step's Reduce phase, waiting for
// the slowest rank included, so busbw is a lower bound of the link's.
//
// The coordinator's metrics come from coordinator.Server.Status through
// Coordinator, which reads a fresh snapshot at every scrape and samples the
// progress aggregate into a bounded history for the curves.
//
// After a run, WriteReport renders the run directory's metrics.jsonl into
// PNG plots (loss, logit scale, learning rate, samples per second, step-time
// breakdown) and a one-page HTML summary with the fields of summary.json.
package observe

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
// The metrics, all prefixed infonce_:
//
//	training process (Worker)
//	  steps_total, samples_total           counters (samples: B per step)
//	  step, epoch, loss, logit_scale,       gauges of the last step
//	  learning_rate, grad_norm
//	  step_phase_seconds{phase}             histogram per phase: data, forward,
//	                                        gather, loss, backward, reduce, optimizer
//	  step_seconds                          histogram of whole steps
//	  allreduce_bytes_total                 S per step with more than one rank
//	  allreduce_algbw_bytes_per_second,     of the last step's all-reduce
//	  allreduce_busbw_bytes_per_second
//	  gradient_bytes, global_batch          S and B, once known
//	  generation, rank, world_size,         membership as this process sees it
//	  generations_started_total
//	  checkpoints_saved_total, checkpoint_step,
//	  checkpoint_age_seconds                (absent before the first checkpoint)
//	  eval_step, eval_<score>               the latest evaluation (--eval-every,
//	                                        or the one at the end) and the steps
//	                                        completed when it was measured: one
//	                                        gauge per score it measured, named
//	                                        after summary.json's field
//	                                        (eval_zero_shot_top1,
//	                                        eval_recall_i2t_at_1, ...); absent
//	                                        before the first evaluation
//	coordinator (Coordinator)
//	  generation, world_size, members{state}, run_phase{phase},
//	  reporting_workers, step, step_min, loss, samples_per_second,
//	  run_samples (steps · B), checkpoint_step, checkpoint_age_seconds,
//	  gossip_members, coordinator_uptime_seconds,
//	  eval_step, eval_<score>               as a worker's, read from the
//	                                        evaluations rank 0 appends to
//	                                        metrics.jsonl when the coordinator
//	                                        can read the run directory
//
// plus the Go runtime's go_* and the process's process_* metrics.
//
// After a run, WriteReport renders the run directory's metrics.jsonl into
// PNG plots (loss, logit scale, learning rate, samples per second, step-time
// breakdown, and the evaluation scores against the step when the run
// evaluated during its training) and a one-page HTML summary with the
// fields of summary.json.
package observe

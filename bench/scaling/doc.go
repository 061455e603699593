// Package scaling measures how training throughput grows with the number
// of workers, and fits an analytic model of the step time to the
// measurements.
//
// Measure runs the same training job (same global batch B, same steps) at
// each worker count through a Launcher: ExecLauncher re-executes the
// infonce binary ('infonce train --workers N' on loopback), NetnsLauncher
// puts every worker in its own network namespace behind a shaped veth link
// (tc tbf for the rate, netem for the delay) with the coordinator on a
// bridge, so communication costs what it would on a real network.
//
// For each worker count the report holds the median throughput X(n) over
// the repeats, the scaling efficiency E(n) = X(n) / (n·X(1)), and rank 0's
// mean step-time breakdown (data, forward, gather, loss, backward, the
// all-reduce with the wait for the slowest rank, optimizer, other), and a
// 95 % bootstrap interval of E(n) over the rounds of repeats. It is
// written as a table, CSV, JSON and PNG/SVG plots; Pool merges the runs of
// several reports of one benchmark.
//
// Model is the strong-scaling step time
//
//	T(n) = c0 + cs·B/n + cl·(B/n)·B + λ(n−1) + β[2(n−1)/n·S + (n−1)/n·G]
//
// (compute of the local share, ring all-reduce of the S gradient bytes,
// ring all-gather of the G embedding bytes, a latency per ring step), whose
// constants Fit estimates by least squares and whose Predict extrapolates
// to more workers and faster links.
package scaling

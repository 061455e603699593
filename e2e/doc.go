// Package e2e holds the end-to-end reliability tests of infonce's
// distributed training: real processes of the infonce binary (a
// coordinator and several workers on 127.0.0.1) into which the tests
// inject the faults of docs/RELIABILITY.md, then check what the run must
// guarantee.
//
// TestMain builds the binary once (internal/testcluster, with the
// faultinject build tag the fault variables need) and writes a small data
// set (the first 1280 MNIST training images, ten global batches of 128 per
// epoch) so that a test sees several whole epochs; the clusters are
// testcluster's, and the run files are read through rundir. Every worker appends the
// sample indices it contributes to each step, and each step it completes,
// to its own sample log (worker.EnvSampleLog); the tests read the logs and
// metrics.jsonl to check that no sample of an epoch is skipped or seen
// twice, that every step of the run completed exactly once in the final
// lineage, and that no two generations made progress at once.
//
// The faults: kill -9 of a worker (at a random moment, rank 0, or inside
// its gradient all-reduce), a worker joining mid-run, too few workers, kill
// -9 and restart of the coordinator, a network partition of one worker (it
// runs as a user of its own and one iptables rule drops every packet that
// user sends; the test skips, saying so, without root or iptables), a
// worker stopped with SIGSTOP longer than the deadlines, kill -9 during
// checkpoint writes, NaN gradients, and bad input (a worker with another
// configuration, a checkpoint of another shape).
//
// Each test prints the figures it measured (recovery times, steps and
// samples lost) with t.Log; run them repeatedly with, for example,
//
//	go test ./e2e -run TestKill -count 10 -v
//
// The package needs a Go toolchain (to build the binary) and loopback
// networking; it does nothing under -short.
package e2e

// Package testcluster runs infonce clusters for tests: a coordinator and
// its workers as processes of the real binary on loopback.
//
// [Build] compiles cmd/infonce once per test binary (cached, removed by
// [Cleanup] from TestMain) with the faultinject build tag, so that tests
// can inject faults through INFONCE_FAULT_* variables which a production
// binary ignores. [WriteMNIST] writes a small idx data set cut from the
// embedded MNIST. [New] starts a coordinator on free loopback ports and
// parses its address from its log; [Cluster.AddWorker] starts workers with
// options (extra flags, environment, user, cores). A test then waits for a
// step ([Cluster.WaitStep]) or for the run to end ([Cluster.WaitDone]),
// kills or stops members, and reads the run directory through package
// rundir. Every process logs into the cluster's directory; the tails of
// the logs go to the test's log when it fails.
//
// Every process runs in its own process group and is killed, with its
// children, when the test ends.
package testcluster

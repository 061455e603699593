// Package shm moves the data plane between processes of one machine
// through shared memory (Linux).
//
// Links: once a TCP ring is connected, every rank creates a segment in
// /dev/shm for its link to the right (a 4 MiB byte ring and a header page,
// mode 0600) and offers it in an all-gather; every rank maps the one its
// left neighbour offered, and a second all-gather tells both ends of each
// link whether it moves (Upgrade). A moved link copies frames into and
// out of the mapping, with futex wake-ups after a short spin, and keeps
// its TCP connection only to learn that the other process is gone; a link
// the two ends cannot share (other hosts, containers with their own
// /dev/shm, a rank on plain "tcp") stays on TCP. The files are removed as
// soon as both ends mapped them.
//
// In place: a ring whose ranks are all on one host, with both links of
// every rank moved, can go further when each rank passes its SharedVector
// (allreduce.Config.Shared): each rank publishes the vector as a file in
// /dev/shm and maps every peer's read-only, and an AllReduce of a slice of
// the vector runs in place (SetupDirect hands the ring an
// allreduce.InPlaceSum). Rank k sums its K-th of the range reading the
// peers' elements directly, then copies the other ranks' summed parts;
// sequence words in each vector's header, spun on and then slept on with
// futexes, order the three phases.
//
// A rank that waits on a link or in an in-place sum calls
// allreduce.Config.OnWait between its polls, when set.
package shm

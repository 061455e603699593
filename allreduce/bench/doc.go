// Package bench measures the collectives of package allreduce the way
// nccl-tests does: K worker processes on 127.0.0.1, a warm-up, then timed
// iterations of one collective per message size, reporting the median time,
// the algorithm bandwidth algbw = S/t and the bus bandwidth busbw, which
// corrects algbw by the share of the data each rank must move so that it
// can be compared with the link speed:
//
//	all-reduce      busbw = algbw * 2(n-1)/n
//	all-gather      busbw = algbw * (n-1)/n   (S = total gathered size)
//	reduce-scatter  busbw = algbw * (n-1)/n   (S = input size per rank)
//	broadcast       busbw = algbw
//
// Main is the parent (the "infonce bench allreduce" command): it starts the
// workers by running the executable it is given with the hidden peer
// command, exchanges their addresses over stdin/stdout and prints the
// table. Peer is the worker. The op "tcp" measures the single-stream
// loopback TCP copy throughput between two workers, the baseline the
// collectives are judged against.
//
// By default (--transport auto) the workers use the data plane training
// workers use, allreduce.ChooseTransport without TLS: their links move to
// shared memory, and an all-reduce of float32 data sums shared vectors in
// place, as workers do with their gradient. --transport grpc, tcp or shm
// and --in-place choose otherwise. Every table ends with the data plane
// the ring actually used ("# transport used: shm+in-place"), which is
// also each row's transport in the JSON output.
package bench

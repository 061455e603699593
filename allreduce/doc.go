// Package allreduce implements the collectives of data-parallel training
// over a ring of K ranks: AllReduce (sum), AllGather with uneven
// contributions, ReduceScatter with uneven segments, Broadcast from any
// root, and Barrier, plus an asynchronous bucket API (Start, Fuser) that
// overlaps gradient reduction with the backward pass.
//
// # Algorithm
//
// Rank r sends only to r+1 and receives only from r-1. AllReduce is a
// reduce-scatter followed by an all-gather: the buffer is cut into K
// segments; in K-1 steps every rank adds the segment arriving from its left
// neighbour and forwards the running sum, so that rank r ends up owning the
// sum of segment r; K-1 more steps circulate the owned sums. Each rank sends
// 2(K-1)/K of the buffer, the lower bound for a ring, hence
// busbw = algbw * 2(K-1)/K. Segments are cut into chunks (Config.ChunkBytes)
// and chunk c of step t leaves as soon as chunk c of step t-1 has arrived:
// sending, receiving and adding overlap. On the plain TCP transport (Linux)
// the caller's goroutine does all three as one event loop over the two
// sockets; on the others one goroutine sends while the caller's receives
// and adds. With two ranks the ring is the simultaneous exchange of
// halves: each rank sends the other the half it does not own, adds the
// half it receives, and sends its sums back.
//
// # Wire formats
//
// float32 payloads travel as float32 by default. With Wire = BFloat16 they
// travel as bfloat16 (half the bytes) and are accumulated in float32; the
// owner of a segment rounds its final sum to bfloat16 too, so all ranks end
// with identical values, within BFloat16Bound of the exact sum:
// |s_hat - s| <= gamma_K * sum_k |x_k| with gamma_K ~ K * 2^-8.
// Compression "s2" or "zstd" compresses each chunk and sends it compressed
// only when that saves at least an eighth, so dense data costs one failed
// compression attempt per chunk and sparse data (mostly zeros) shrinks.
//
// # Transports
//
// A Transport moves whole tagged messages to the right neighbour and from
// the left one. Three exist: in memory (NewMemRings, for tests), gRPC (the
// default: one long-lived bidirectional Link stream per ring edge, defined
// in allreducepb/ring.proto, whose messages go through a raw codec that
// neither protobuf-encodes nor allocates per message), and plain TCP
// (Config.Transport = "tcp": length-prefixed frames written straight from
// the caller's buffer and read straight into it, or into a scratch chunk
// that is added while it is still in the cache). One Server per worker
// listens for both on a single port for its whole life and tells them
// apart by their first bytes.
//
// TCP rings also try shared memory (Config.Transport = "shm", Linux): once
// a ring is connected, every rank creates a segment in /dev/shm for its
// link to the right (a 4 MiB byte ring and a header page, mode 0600) and
// offers it in an all-gather; every rank maps the one its left neighbour
// offered, and a second all-gather tells both ends of each link whether
// it moves. A moved link copies frames into and out of the mapping, with
// futex wake-ups after a short spin, and keeps its TCP connection only to
// learn that the other process is gone; a link the two ends cannot share
// (other hosts, containers with their own /dev/shm, a rank on plain
// "tcp") stays on TCP. The files are removed as soon as both ends mapped
// them. Workers use it by default (worker --data-shm); between two
// processes a 2.3 MB all-reduce takes about a third of the time and of the
// CPU it takes over loopback TCP (docs/BENCHMARKS.md).
//
// A ring whose ranks are all on one host, with both links of every rank
// moved to shared memory, can go further when each rank passes its
// SharedVector (Config.Shared): each rank then publishes the vector as a
// file in /dev/shm and maps every peer's read-only, and an AllReduce of a
// slice of the vector runs in place (InPlace reports it). Rank k sums its
// K-th of the range reading the peers' elements directly, then copies the
// other ranks' summed parts; sequence words in each vector's header,
// spun on and then slept on with futexes, order the three phases. That is
// half the memory traffic of frames through byte rings: between 2
// processes a 2.3 MB all-reduce takes 0.18 ms instead of 0.9 ms, and 64
// MiB runs at 15 GB/s busbw instead of 4 (docs/BENCHMARKS.md). Workers keep
// their gradient in a SharedVector whenever shared memory is allowed.
//
// A rank that waits for its peers on a shared-memory link, in an in-place
// all-reduce or in the TCP event loop calls Config.Idle between its polls,
// when set, and keeps polling as long as that does work (on shared memory
// yielding to the process's other goroutines after each piece, since the
// sending half of the collective may be one of them): workers draw the
// next step's input there (worker.Trainer.PrefetchSome).
//
// # Choosing the data plane
//
// Both network transports move the same bytes; they differ in the CPU
// they spend per byte, which on a loopback host whose cores also run the
// workers is what limits bandwidth. Measured on a shared 2-core AMD EPYC
// VM (Linux, Go 1.26, 2026-11-27, load average 3-12), CPU milliseconds
// (user+sys, all processes) per 64 MiB float32 all-reduce, medians of 5
// rounds of "bench/baselines/gloo/rounds.py" (docs/BENCHMARKS.md):
//
//	ranks   tcp     grpc    gloo (torch 1.13)
//	2       56      94      69
//	4       176     335     189
//	8       455     823     441
//
// gRPC costs 1.7-1.9 times the CPU of the plain TCP transport: its
// messages are copied into HTTP/2 frames, through bufio on both sides and
// out of gRPC's receive buffers. The TCP transport runs each collective on
// Linux as one event loop in the caller's goroutine: non-blocking
// sendmsg(2) of header and chunk straight from the caller's buffer,
// non-blocking recvmsg(2) straight into the destination (or into a scratch
// chunk that is added at once, while it is still in the cache), and one
// ppoll(2) on both sockets when neither can progress, with SO_RCVLOWAT set
// so that the kernel wakes the loop once per chunk instead of once per
// 64 KiB loopback segment; no goroutine hand-off, no second thread, no
// allocation per chunk. What remains is mostly the kernel's: the copy
// into the socket and the copy out of it. A single loopback stream costs
// 0.31 ns of CPU per byte for both ends together on this machine; the
// all-reduce costs 0.42, 0.44 and 0.48 ns per byte sent with 2, 4 and 8
// ranks (gloo: 0.51, 0.47, 0.47), every rank sending 2(K-1)/K of the
// buffer whatever the library. With as many ranks as cores or more, the
// collective is bound by that cost, which gloo pays too. gRPC stays the
// default because it is the transport that can carry TLS.
//
// The bfloat16 wire halves the bytes and so the kernel's share of the
// work: 2.71, 1.33 and 0.60 GB/s busbw at 64 MiB over TCP with 2, 4 and 8
// ranks (2026-11-27), against float32's 2.06-2.26, 0.93-0.95 and 0.39-0.44.
// Compression is for slow links and sparse data: each chunk is tried and
// sent compressed only if that saves an eighth. On loopback the link is as
// fast as the compressor and it never paid: with 2 ranks at 16 MiB over
// TCP, dense data gave 1.69 GB/s without compression, 1.53 with s2 and
// 1.25 with zstd; data 99% zeros gave 1.99, 1.70 and 0.77. It can pay
// where the network is much slower than s2 (hundreds of MB/s per core) and
// gradients are sparse.
//
// # Generations and failures
//
// Every link opens with a handshake carrying the protocol version, job id,
// generation and ranks; the server refuses a mismatch with a reason that
// the dialing side returns as ErrHandshake or ErrGeneration. NewRing for a
// newer generation breaks the rings of older ones on the same Server, and
// their late links are refused as stale.
//
// Every collective runs under a deadline (the context's, else
// Config.Timeout) and carries a tag with its sequence number and kind, so
// ranks that disagree about the operation or its sizes fail with
// ErrMismatch instead of exchanging garbage. A failure returns a *PeerError
// naming the operation, generation and peer, wrapping ErrPeerLost,
// ErrDeadline, ErrGeneration, ErrMismatch, ErrCanceled or ErrClosed. A
// failed collective closes the ring's links, so its neighbours fail at
// once, and theirs, around the ring: a dead peer becomes an error on every
// rank within milliseconds, a stalled one at the deadline. The broken ring
// stays broken; recovery is a new generation.
package allreduce

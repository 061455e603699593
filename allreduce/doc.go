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
// the left one; the ring keeps the algorithm (the message plan, the wire
// formats, deadlines and errors). NewMemRings connects rings in memory,
// for tests. The network transports are packages of their own, which
// import this one and never the reverse:
//
//   - allreduce/grpc (the default of Config.Transport): one long-lived
//     bidirectional Link stream per ring edge, whose messages go through
//     a raw codec that neither protobuf-encodes nor allocates per
//     message; the only one that carries TLS.
//   - allreduce/tcp (Config.Transport = "tcp"): length-prefixed frames
//     written straight from the caller's buffer and read straight into
//     it, or into a scratch chunk that is added while it is still in the
//     cache.
//   - allreduce/shm (Config.Transport = "shm", Linux): a TCP ring whose
//     links between processes of one machine move their frames through
//     shared memory, and whose all-reduces of a slice of a
//     shm.SharedVector (Config.Shared) run in place, each rank reading its
//     peers' vectors directly. Workers use it by default (worker
//     --data-shm); between two processes of one machine it takes a
//     fraction of the time and of the CPU of loopback TCP
//     (docs/SCALING.md, "Collectives on one host": `infonce bench allreduce
//     --transport shm --in-place=false|true` against `--transport tcp`).
//
// allreduce/dataplane sits above them: one Server per worker listens for
// every transport on a single port for its whole life, tells them apart
// by their first bytes, admits connections (token, TLS), and NewRing
// builds each generation's ring over the links it chose.
//
// A transport takes part in a collective through three hooks: a Passer
// runs a whole pass itself (the TCP event loop, over the Pass the ring
// plans), an InPlaceSum set with Ring.SetInPlace sums all-reduces of a
// shared vector in place, and a GracefulCloser lets a ring closed while
// idle deliver what it sent.
//
// A rank that waits for its peers on a shared-memory link, in an in-place
// all-reduce or in the TCP event loop calls Config.OnWait between its polls,
// when set, and keeps polling as long as that does work (on shared memory
// yielding to the process's other goroutines after each piece, since the
// sending half of the collective may be one of them). The caller decides
// what the waits are good for, such as preparing the input of its next
// step.
//
// # Choosing the data plane
//
// Both network transports move the same bytes; they differ in the CPU
// they spend per byte, which on a loopback host whose cores also run the
// workers is what limits bandwidth. gRPC copies every message into HTTP/2
// frames, through bufio on both sides and out of gRPC's receive buffers.
// The TCP transport runs each collective on Linux as one event loop in
// the caller's goroutine: non-blocking sendmsg(2) of header and chunk
// straight from the caller's buffer, non-blocking recvmsg(2) straight into
// the destination (or into a scratch chunk that is added at once, while it
// is still in the cache), and one ppoll(2) on both sockets when neither
// can progress, with SO_RCVLOWAT set so that the kernel wakes the loop
// once per chunk instead of once per 64 KiB loopback segment; no goroutine
// hand-off, no second thread, no allocation per chunk. What remains is
// mostly the kernel's: the copy into the socket and the copy out of it,
// which every ring pays for the 2(K-1)/K of the buffer each rank sends.
// ChooseTransport is the choice workers make: shared memory between
// processes of one machine, plain TCP between machines, gRPC only when
// the links need TLS, the one thing only it carries. The CPU and
// bandwidth of each, against gloo, are in docs/BENCHMARKS.md, section
// "Collectives", and docs/SCALING.md, "Collectives on one host" (`bench/baselines/gloo/rounds.py`, which runs `infonce bench
// allreduce --transport tcp|grpc`); `infonce bench allreduce` without
// --transport measures the workers' choice and prints it.
//
// The bfloat16 wire halves the bytes and so the kernel's share of the
// work (docs/SCALING.md, "Gradient wire formats": `infonce bench allreduce
// --transport tcp --wire bf16`). Compression is for slow links and sparse
// data: each chunk is tried and sent compressed only if that saves an
// eighth; on loopback the link is as fast as the compressor and it does
// not pay (same section: `--compression s2|zstd [--sparsity 0.99]`).
// What each costs and saves in training, on emulated 1 and 10 Gbit/s
// links, is in docs/SCALING.md, section "Gradient wire formats".
//
// # Generations and failures
//
// Every network link opens with a handshake carrying the protocol version,
// job id, generation and ranks; the server refuses a mismatch with a
// reason that the dialing side returns as ErrHandshake or ErrGeneration.
// dataplane.NewRing for a newer generation breaks the rings of older ones
// on the same Server, and their late links are refused as stale.
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

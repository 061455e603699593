package allreduce

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"
)

// Wire is the element format of float32 payloads on the wire.
type Wire uint8

const (
	// Float32 sends IEEE-754 binary32 values unchanged (the default).
	Float32 Wire = iota
	// BFloat16 sends the upper 16 bits of each float32 (round to nearest
	// even) and accumulates in float32. See BFloat16Bound for the error.
	BFloat16
)

// String returns "f32" or "bf16".
func (w Wire) String() string {
	switch w {
	case Float32:
		return "f32"
	case BFloat16:
		return "bf16"
	}
	return fmt.Sprintf("Wire(%d)", uint8(w))
}

// ParseWire parses "f32"/"float32" or "bf16"/"bfloat16".
func ParseWire(s string) (Wire, error) {
	switch s {
	case "", "f32", "float32":
		return Float32, nil
	case "bf16", "bfloat16":
		return BFloat16, nil
	}
	return 0, fmt.Errorf("allreduce: unknown wire format %q (want f32 or bf16)", s)
}

// Transport kinds accepted in Config.Transport.
const (
	TransportGRPC = "grpc" // HTTP/2 streams through grpc-go (the default)
	TransportTCP  = "tcp"  // length-prefixed frames on a plain TCP connection
	// TransportSHM is TransportTCP whose links between two processes of
	// one host then move their frames through shared memory (Linux; a
	// link the two ends cannot share, or whose other end uses
	// TransportTCP, stays on TCP).
	TransportSHM = "shm"
)

// ChooseTransport is the data plane a worker uses when nothing forces
// another: TransportSHM (plain TCP between hosts, its links moved to
// shared memory between processes of one machine), TransportTCP when
// shared memory is not allowed, and TransportGRPC when the links need TLS,
// which only gRPC carries. Plain TCP costs about two thirds of gRPC's CPU
// per byte (see docs/SCALING.md, "Collectives on one host", `infonce bench allreduce --transport
// tcp` against `--transport grpc`).
func ChooseTransport(tls, sharedMemory bool) string {
	switch {
	case tls:
		return TransportGRPC
	case !sharedMemory:
		return TransportTCP
	}
	return TransportSHM
}

// Defaults, chosen by measurement on loopback (see the benchmark command).
const (
	// DefaultChunkBytes is the pipelining unit: a segment is cut into chunks
	// of this size so that sending, receiving and adding overlap.
	DefaultChunkBytes = 512 << 10
	// DefaultBucketBytes is the fusion bucket size of a Fuser: below a few
	// MiB the per-bucket start-up of the ring dominates, and 16 MiB is
	// about as fast as larger buckets while still leaving several to
	// overlap with the backward pass of a large model (docs/SCALING.md,
	// "Data-plane settings": `infonce bench allreduce --op fused --sizes 64MiB
	// --bucket 1MiB|4MiB|16MiB|25MiB`).
	DefaultBucketBytes = 16 << 20
	// DefaultTimeout is the per-operation deadline when the context has none.
	DefaultTimeout = 30 * time.Second

	// DefaultTCPChunkBytes is the pipelining chunk of the plain TCP
	// transport when Config.ChunkBytes is 0: with 2 and 4 ranks, 1 MiB
	// chunks cost less CPU per byte than 256 KiB, 512 KiB, 2 and 4 MiB
	// ones (one wake-up of the reader per chunk).
	DefaultTCPChunkBytes = 1 << 20

	// MaxFrameBytes bounds every data frame a peer may send.
	MaxFrameBytes = 64 << 20
	// MaxJobID bounds the job id carried in a handshake.
	MaxJobID = 256
)

// Config describes one rank of one generation of a ring.
type Config struct {
	JobID      string        // all ranks of a ring share it; a peer of another job is refused
	Generation uint64        // membership epoch; links of another generation are refused
	Rank       int           // this rank, 0 <= Rank < len(Peers)
	Peers      []string      // data-plane addresses in ring order (Peers[Rank] is this worker)
	Timeout    time.Duration // per-operation deadline when ctx has none (DefaultTimeout if 0)

	Wire        Wire   // Float32 or BFloat16 for float32 payloads
	Compression string // "", "s2" or "zstd": compress each chunk when that makes it smaller

	ChunkBytes  int // pipelining chunk (if 0: DefaultChunkBytes, 1 MiB on the plain TCP transport)
	BucketBytes int // Fuser bucket size (DefaultBucketBytes if 0)

	// Transport selects the data plane for dataplane.NewRing:
	// TransportGRPC (default), TransportTCP or TransportSHM. All are served
	// by the same dataplane.Server listener.
	Transport string

	// Token, when set, is proved to the right neighbour's dataplane.Server
	// (see dataplane.WithToken) on every connection.
	Token string
	// TLS, when set, wraps every connection to a neighbour in TLS: RootCAs
	// verifies the neighbour's certificate (ServerName defaults to the
	// peer's host) and Certificates holds this worker's client certificate
	// for mutual TLS. The plain TCP transport cannot be used with it.
	TLS *tls.Config

	// Shared, when set, is this rank's *shm.SharedVector: a ring of ranks
	// that are all on this machine and linked through shared memory
	// (TransportSHM) sums every all-reduce of a slice of it in place,
	// reading the peers' vectors directly. Every rank must then pass the
	// same range of its own vector. One open ring at a time uses it. A nil
	// *shm.SharedVector counts as none.
	Shared Vector

	// OnWait, when set, lends the caller the time this rank spends
	// waiting for its peers: it is called between two polls while the
	// rank waits on a shared-memory link, in an in-place all-reduce or in
	// the TCP event loop (Linux), before the rank would sleep. It may do a
	// short piece of the caller's own work (tens of microseconds at most)
	// and reports whether it did any; the rank keeps polling, instead of
	// going to sleep, for as long as it does. It may be called from any
	// goroutine that waits in a collective (a bucket's all-reduce waits
	// beside the caller's computation) and must be safe for that.
	OnWait func() bool

	Logger *slog.Logger // nil discards
}

// WithDefaults returns c for a ring of size ranks with zero fields
// replaced by their defaults, or an error naming the first invalid field.
func (c Config) WithDefaults(size int) (Config, error) {
	if size <= 0 {
		return c, fmt.Errorf("allreduce: ring of %d ranks", size)
	}
	if c.Rank < 0 || c.Rank >= size {
		return c, fmt.Errorf("allreduce: rank %d outside ring of %d", c.Rank, size)
	}
	if len(c.JobID) > MaxJobID {
		return c, fmt.Errorf("allreduce: job id of %d bytes (max %d)", len(c.JobID), MaxJobID)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Timeout < 0 {
		return c, fmt.Errorf("allreduce: negative timeout %v", c.Timeout)
	}
	if c.ChunkBytes == 0 {
		c.ChunkBytes = DefaultChunkBytes
		if c.Transport == TransportTCP {
			c.ChunkBytes = DefaultTCPChunkBytes
		}
	}
	if c.ChunkBytes < 64 || c.ChunkBytes > MaxFrameBytes/2 {
		return c, fmt.Errorf("allreduce: chunk of %d bytes (want 64..%d)", c.ChunkBytes, MaxFrameBytes/2)
	}
	c.ChunkBytes &^= 7 // whole float64 elements
	if c.BucketBytes == 0 {
		c.BucketBytes = DefaultBucketBytes
	}
	if c.BucketBytes < 0 {
		return c, fmt.Errorf("allreduce: negative bucket size %d", c.BucketBytes)
	}
	switch c.Wire {
	case Float32, BFloat16:
	default:
		return c, fmt.Errorf("allreduce: unknown wire format %v", c.Wire)
	}
	switch c.Compression {
	case "", "none":
		c.Compression = ""
	case "s2", "zstd":
	default:
		return c, fmt.Errorf("allreduce: unknown compression %q (want \"\", s2 or zstd)", c.Compression)
	}
	switch c.Transport {
	case "":
		c.Transport = TransportGRPC
	case TransportGRPC, TransportTCP, TransportSHM:
	default:
		return c, fmt.Errorf("allreduce: unknown transport %q (want grpc, tcp or shm)", c.Transport)
	}
	if c.TLS != nil && (c.Transport == TransportTCP || c.Transport == TransportSHM) {
		return c, fmt.Errorf("allreduce: the %s transport has no TLS: use %s", TransportTCP, TransportGRPC)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

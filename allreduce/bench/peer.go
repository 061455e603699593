package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/dataplane"
	"github.com/infonce/infonce/allreduce/shm"
)

// Peer is one worker process of the benchmark: it listens on 127.0.0.1,
// prints "ADDR host:port", reads "PEERS a,b,..." from stdin, builds the ring
// and runs the timed loop; rank 0 prints one "ROW {json}" line per size.
func Peer(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("allreduce-peer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	sizes := o.register(fs)
	rank := fs.Int("rank", 0, "this worker's rank")
	size := fs.Int("size", 1, "number of workers")
	if err := fs.Parse(args); err != nil {
		return UsageError{err}
	}
	if err := o.validate(*sizes); err != nil {
		return UsageError{err}
	}
	wire, err := allreduce.ParseWire(o.wire)
	if err != nil {
		return UsageError{err}
	}
	srv, err := dataplane.Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer srv.Close()
	var tcpLn net.Listener
	if o.op == "tcp" {
		if tcpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		defer tcpLn.Close()
		fmt.Fprintf(stdout, "ADDR %s\n", tcpLn.Addr())
	} else {
		fmt.Fprintf(stdout, "ADDR %s\n", srv.Addr())
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading peers: %w", err)
	}
	list, ok := strings.CutPrefix(strings.TrimSpace(line), "PEERS ")
	if !ok {
		return fmt.Errorf("expected PEERS line, got %q", line)
	}
	peers := strings.Split(list, ",")
	if len(peers) != *size {
		return fmt.Errorf("%d peers for %d workers", len(peers), *size)
	}
	if o.op == "tcp" {
		return tcpBaseline(ctx, o, *rank, peers, tcpLn, stdout)
	}
	cfg := allreduce.Config{
		JobID: "bench", Generation: 1, Rank: *rank, Peers: peers, Timeout: o.timeout,
		Wire: wire, Compression: o.compression, ChunkBytes: o.chunk, BucketBytes: int(o.bucket),
		Transport: o.transport,
	}
	var vec *shm.SharedVector
	if o.inPlace {
		vec, err = shm.NewSharedVector(int(slices.Max(o.sizes)/4) + 1)
		switch {
		case err == nil:
			defer vec.Close() // after the ring's Close
			cfg.Shared = vec
		case o.inPlaceSet:
			return err
		default:
			vec = nil // the automatic choice falls back to frames
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ring, err := dataplane.NewRing(cctx, srv, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer ring.Close()
	if o.inPlace && !ring.InPlace() && o.inPlaceSet {
		return fmt.Errorf("--in-place: the ring cannot sum in place (are all workers on this machine, with /dev/shm?)")
	}
	for _, s := range o.sizes {
		row, err := measure(ctx, ring, vec, o, s)
		if err != nil {
			return fmt.Errorf("size %d: %w", s, err)
		}
		if *rank == 0 {
			b, _ := json.Marshal(row)
			fmt.Fprintf(stdout, "ROW %s\n", b)
		}
	}
	return ring.Barrier(ctx)
}

// measure times o.iters runs of the collective on s bytes and returns the
// row computed from the per-iteration maximum over ranks.
func measure(ctx context.Context, ring *allreduce.Ring, vec *shm.SharedVector, o options, s int64) (Row, error) {
	k := ring.Size()
	n := int(s / 4) // float32 elements
	rng := rand.New(rand.NewPCG(o.seed, uint64(ring.Rank())))
	data := make([]float32, n)
	if vec != nil {
		data = vec.Floats()[:n]
	}
	orig := make([]float32, n)
	for i := range orig {
		if rng.Float64() >= o.sparsity {
			orig[i] = float32(rng.NormFloat64())
		}
	}
	counts := make([]int, k)
	for r := range counts {
		counts[r] = n / k
		if r < n%k {
			counts[r]++
		}
	}
	byteCounts := make([]int, k)
	for r := range byteCounts {
		byteCounts[r] = 4 * counts[r]
	}
	gathered := make([]byte, 4*n)
	raw := unsafeBytes(data)
	var fuser *allreduce.Fuser
	if o.op == "fused" {
		fuser = ring.NewFuser(ctx, data)
	}
	reset := func() { copy(data, orig) }
	run := func() error {
		switch o.op {
		case "allreduce":
			return ring.AllReduce(ctx, data)
		case "reducescatter":
			return ring.ReduceScatter(ctx, data, counts)
		case "allgather":
			me := 0
			for r := range ring.Rank() {
				me += byteCounts[r]
			}
			return ring.AllGather(ctx, raw[me:me+byteCounts[ring.Rank()]], gathered, byteCounts)
		case "broadcast":
			return ring.Broadcast(ctx, raw, 0)
		case "fused":
			// gradients become ready in reverse layer order, 64 KiB per layer
			const layer = 16 << 10
			for hi := n; hi > 0; hi -= layer {
				if err := fuser.Add(data[max(0, hi-layer):hi]); err != nil {
					return err
				}
			}
			return fuser.Wait()
		}
		return fmt.Errorf("unknown op %q", o.op)
	}
	for range o.warmup {
		reset()
		if err := run(); err != nil {
			return Row{}, err
		}
	}
	times := make([]float64, o.iters)
	var cpu float64 // CPU seconds of this process inside the timed calls
	for i := range times {
		reset()
		if err := ring.Barrier(ctx); err != nil {
			return Row{}, err
		}
		c0 := cpuSeconds()
		t0 := time.Now()
		if err := run(); err != nil {
			return Row{}, err
		}
		times[i] = time.Since(t0).Seconds()
		cpu += cpuSeconds() - c0
	}
	// Gather every rank's times and CPU seconds; an iteration takes as long
	// as its slowest rank, and costs the CPU of all ranks.
	all := make([]byte, 8*(len(times)+1)*k)
	mine := make([]byte, 0, 8*(len(times)+1))
	for _, t := range times {
		mine = binary.LittleEndian.AppendUint64(mine, math.Float64bits(t))
	}
	mine = binary.LittleEndian.AppendUint64(mine, math.Float64bits(cpu))
	cnt := make([]int, k)
	for r := range cnt {
		cnt[r] = len(mine)
	}
	if err := ring.AllGather(ctx, mine, all, cnt); err != nil {
		return Row{}, err
	}
	worst := make([]float64, len(times))
	var cpuAll float64
	for r := range k {
		base := 8 * r * (len(times) + 1)
		for i := range times {
			t := math.Float64frombits(binary.LittleEndian.Uint64(all[base+8*i:]))
			worst[i] = max(worst[i], t)
		}
		cpuAll += math.Float64frombits(binary.LittleEndian.Uint64(all[base+8*len(times):]))
	}
	slices.Sort(worst)
	med := worst[len(worst)/2]
	if len(worst)%2 == 0 {
		med = (worst[len(worst)/2-1] + worst[len(worst)/2]) / 2
	}
	bytes := int64(4 * n)
	algbw := float64(bytes) / med / 1e9
	factor := 1.0
	switch o.op {
	case "allreduce", "fused":
		factor = 2 * float64(k-1) / float64(k)
	case "allgather", "reducescatter":
		factor = float64(k-1) / float64(k)
	}
	row := Row{Op: o.op, Workers: k, Bytes: bytes, Count: int64(n), SecondsMedian: med,
		AlgbwGBps: algbw, BusbwGBps: algbw * factor, CPUSeconds: cpuAll / float64(o.iters), Iters: o.iters, Transport: ring.DataPlane(),
		Wire: o.wire, Compression: o.compression}
	if o.op == "fused" {
		row.Bucket = o.bucket
	}
	return row, nil
}

// tcpBaseline measures single-stream loopback TCP: rank 0 writes s bytes,
// rank 1 reads them and answers with one byte; time = s / throughput plus
// one small round trip.
func tcpBaseline(ctx context.Context, o options, rank int, peers []string, ln net.Listener, stdout io.Writer) error {
	if len(peers) != 2 {
		return errors.New("the tcp baseline needs exactly 2 workers")
	}
	var conn net.Conn
	var err error
	if rank == 0 {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", peers[1])
	} else {
		conn, err = ln.Accept()
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	maxSize := slices.Max(o.sizes)
	buf := make([]byte, maxSize)
	ack := make([]byte, 1)
	for _, s := range o.sizes {
		times := make([]float64, 0, o.iters)
		for it := range o.warmup + o.iters {
			t0 := time.Now()
			if rank == 0 {
				if _, err := conn.Write(buf[:s]); err != nil {
					return err
				}
				if _, err := io.ReadFull(conn, ack); err != nil {
					return err
				}
			} else {
				if _, err := io.ReadFull(conn, buf[:s]); err != nil {
					return err
				}
				if _, err := conn.Write(ack); err != nil {
					return err
				}
			}
			if it >= o.warmup {
				times = append(times, time.Since(t0).Seconds())
			}
		}
		if rank == 0 {
			slices.Sort(times)
			med := times[len(times)/2]
			bw := float64(s) / med / 1e9
			b, _ := json.Marshal(Row{Op: "tcp", Workers: 2, Bytes: s, Count: s, SecondsMedian: med,
				AlgbwGBps: bw, BusbwGBps: bw, Iters: o.iters, Transport: "tcp", Wire: "bytes"})
			fmt.Fprintf(stdout, "ROW %s\n", b)
		}
	}
	return nil
}

package grpc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/allreducepb"
	"github.com/infonce/infonce/allreduce/internal/link"
)

// rawCodecName is the gRPC content subtype of the data plane.
const rawCodecName = "infonce-raw"

// gRPC transport tuning: one stream per connection carries large messages,
// so the flow-control windows and I/O buffers are sized for a few chunks in
// flight.
const (
	grpcWindow    = 32 << 20
	grpcIOBuffer  = 512 << 10
	grpcMaxMsg    = allreduce.MaxFrameBytes + 8
	closeGrace    = 2 * time.Second // how long Close waits for the peer to read what was sent
	maxHelloBytes = link.MaxHandshake
)

func init() { encoding.RegisterCodecV2(rawCodec{}) }

// rawCodec moves a message as an 8-byte little-endian tag followed by the
// payload bytes, without protobuf encoding. It knows *outMsg and *inMsg
// (the data path) and *allreducepb.Frame (for other clients).
type rawCodec struct{}

// outMsg is a message to send. With release set, the codec hands data to
// gRPC by reference and release.Put is called once gRPC has written it out
// (the sender waits for that before reusing the buffer); otherwise data is
// copied into a pooled buffer.
type outMsg struct {
	tag     uint64
	data    []byte
	hdr     [8]byte
	release mem.BufferPool
}

// zeroCopyMin is the smallest payload sent by reference (smaller buffers
// are below gRPC's pooling threshold and cannot report their release).
const zeroCopyMin = 32 << 10

// releaseSignal is a BufferPool whose Put reports that gRPC has released a
// payload sent by reference.
type releaseSignal chan struct{}

func (r releaseSignal) Get(n int) *[]byte {
	b := make([]byte, n)
	return &b
}

func (r releaseSignal) Put(*[]byte) {
	select {
	case r <- struct{}{}:
	default:
	}
}

// inMsg is a received message; data holds a reference to gRPC's buffers
// that the receiver frees after copying out.
type inMsg struct {
	tag  uint64
	data mem.BufferSlice
}

func (rawCodec) Name() string { return rawCodecName }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	var tag uint64
	var data []byte
	switch m := v.(type) {
	case *outMsg:
		if m.release != nil && len(m.data) >= zeroCopyMin {
			binary.LittleEndian.PutUint64(m.hdr[:], m.tag)
			return mem.BufferSlice{mem.SliceBuffer(m.hdr[:]), mem.NewBuffer(&m.data, m.release)}, nil
		}
		tag, data = m.tag, m.data
	case *allreducepb.Frame:
		tag, data = m.Tag, m.Data
	default:
		return nil, fmt.Errorf("allreduce/grpc: raw codec cannot marshal %T", v)
	}
	pool := dataPool
	b := pool.Get(8 + len(data))
	binary.LittleEndian.PutUint64(*b, tag)
	copy((*b)[8:], data)
	return mem.BufferSlice{mem.NewBuffer(b, pool)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	n := data.Len()
	if n < 8 {
		return fmt.Errorf("allreduce/grpc: raw message of %d bytes: %w", n, link.ErrMalformed)
	}
	// The tag may straddle buffers; the payload is kept by reference.
	var hdr [8]byte
	var payload mem.BufferSlice
	got := 0
	for _, b := range data {
		d := b.ReadOnlyData()
		if got < 8 {
			c := copy(hdr[got:], d)
			got += c
			d = d[c:]
			if len(d) == 0 {
				continue
			}
			payload = append(payload, b.Slice(b.Len()-len(d), b.Len()))
			continue
		}
		payload = append(payload, b.Slice(0, b.Len()))
	}
	tag := binary.LittleEndian.Uint64(hdr[:])
	switch m := v.(type) {
	case *inMsg:
		m.tag, m.data = tag, payload
		return nil
	case *allreducepb.Frame:
		m.Tag, m.Data = tag, payload.Materialize()
		payload.Free()
		return nil
	}
	payload.Free()
	return fmt.Errorf("allreduce/grpc: raw codec cannot unmarshal into %T", v)
}

// grpcBackoff retries a refused connection quickly: peers start within
// milliseconds of each other.
var grpcBackoff = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 300 * time.Millisecond},
	MinConnectTimeout: 2 * time.Second,
}

// Out is the sending half of a gRPC link: the client of a Link stream
// to the right neighbour.
type Out struct {
	cc       *grpc.ClientConn
	stream   grpc.ClientStream
	ctx      context.Context // the stream's
	cancel   context.CancelFunc
	msg      outMsg
	released releaseSignal
	mu       sync.Mutex // serializes Close
	closed   bool
}

// dial opens the link to addr and completes the handshake; it gives up
// when ctx ends.
func dial(ctx context.Context, addr string, hello link.Handshake, extra ...grpc.DialOption) (*Out, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr, append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpcBackoff),
		grpc.WithDisableRetry(), // a retry buffer would keep copies of sent messages
		grpc.WithInitialWindowSize(grpcWindow),
		grpc.WithInitialConnWindowSize(grpcWindow),
		grpc.WithReadBufferSize(grpcIOBuffer),
		grpc.WithWriteBufferSize(grpcIOBuffer),
		experimental.WithBufferPool(dataPool),
		grpc.WithDefaultCallOptions(
			grpc.CallContentSubtype(rawCodecName),
			grpc.MaxCallRecvMsgSize(grpcMaxMsg),
			grpc.MaxCallSendMsgSize(grpcMaxMsg))}, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("grpc client for %s: %w", addr, err)
	}
	// The stream lives as long as the ring; until the handshake is done,
	// the end of ctx cancels it.
	sctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	fail := func(err error) (*Out, error) {
		stop()
		cancel()
		cc.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: connecting to %s: %v", allreduce.ErrDeadline, addr, err)
		}
		return nil, err
	}
	stream, err := allreducepb.NewRingClient(cc).Link(sctx, grpc.WaitForReady(true))
	if err != nil {
		return fail(fmt.Errorf("%w: opening link to %s: %v", allreduce.ErrPeerLost, addr, err))
	}
	if err := stream.SendMsg(&outMsg{data: hello.Encode()}); err != nil {
		return fail(fmt.Errorf("%w: sending handshake to %s: %v", allreduce.ErrPeerLost, addr, err))
	}
	var reply inMsg
	if err := stream.RecvMsg(&reply); err != nil {
		return fail(fmt.Errorf("%w: reading handshake reply from %s: %v", allreduce.ErrPeerLost, addr, err))
	}
	b := reply.data.Materialize()
	reply.data.Free()
	if err := link.CheckReply(b, addr); err != nil {
		return fail(err)
	}
	if !stop() {
		return fail(fmt.Errorf("%w: connecting to %s", allreduce.ErrDeadline, addr))
	}
	return &Out{cc: cc, stream: stream, ctx: sctx, cancel: cancel, released: make(releaseSignal, 1)}, nil
}

// Send hands p to gRPC. A large p goes by reference and send returns once
// gRPC has copied it into its write buffer, so p is not kept.
func (g *Out) Send(tag uint64, p []byte) error {
	g.msg = outMsg{tag: tag, data: p}
	byRef := len(p) >= zeroCopyMin
	if byRef {
		g.msg.release = g.released
	}
	if err := g.stream.SendMsg(&g.msg); err != nil {
		return fmt.Errorf("%w: %v", allreduce.ErrPeerLost, err)
	}
	if byRef {
		select {
		case <-g.released:
		case <-g.ctx.Done():
			return fmt.Errorf("%w: link closed while sending", allreduce.ErrPeerLost)
		}
	}
	return nil
}

// Close half-closes the stream so that what was sent is delivered, waits
// briefly for the peer to end the stream, then tears the connection down.
func (g *Out) Close(graceful bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	g.closed = true
	if graceful {
		if g.stream.CloseSend() == nil {
			done := make(chan struct{})
			go func() {
				var m inMsg
				for g.stream.RecvMsg(&m) == nil {
					m.data.Free()
				}
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(closeGrace):
			}
			g.cancel()
			<-done
		}
	}
	g.cancel()
	g.cc.Close()
}

// In is the receiving half of a gRPC link: the server handler of the
// left neighbour's Link stream reads messages into msgs.
type In struct {
	msgs    chan inMsg
	ended   chan struct{} // closed when the handler stops reading
	endErr  error         // why it stopped, set before ended is closed
	release func()        // closes the connection, ending the handler
	once    sync.Once
}

func (g *In) Recv(ctx context.Context, dst []byte) (uint64, int, error) {
	var m inMsg
	select {
	case m = <-g.msgs:
	default:
		select {
		case m = <-g.msgs:
		case <-g.ended:
			select {
			case m = <-g.msgs:
			default:
				return 0, 0, g.endErr
			}
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
	}
	defer m.data.Free()
	n := m.data.Len()
	if n > len(dst) {
		return m.tag, 0, fmt.Errorf("%w: message of %d bytes, expected at most %d", allreduce.ErrMismatch, n, len(dst))
	}
	m.data.CopyTo(dst)
	return m.tag, n, nil
}

func (g *In) Close() {
	g.once.Do(g.release)
}

// serveLink runs in the handler goroutine after the handshake was
// accepted: it reads messages until the stream or connection ends.
func (g *In) serveLink(stream grpc.ServerStream, quit <-chan struct{}) {
	defer close(g.ended)
	for {
		var m inMsg
		if err := stream.RecvMsg(&m); err != nil {
			if errors.Is(err, io.EOF) {
				g.endErr = fmt.Errorf("%w: the peer closed the link", allreduce.ErrPeerLost)
			} else {
				g.endErr = fmt.Errorf("%w: %v", allreduce.ErrPeerLost, err)
			}
			return
		}
		select {
		case g.msgs <- m:
		case <-quit:
			m.data.Free()
			g.endErr = fmt.Errorf("%w: link released", link.ErrLinkClosed)
			return
		}
	}
}

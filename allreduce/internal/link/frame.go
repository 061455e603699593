package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/infonce/infonce/allreduce"
)

// ProtocolVersion is carried in every Handshake; a peer speaking another
// version is refused.
const ProtocolVersion = 3

// MaxReason bounds the refusal text carried in a handshake reply.
const MaxReason = 1024

// Handshake kinds.
const (
	HelloKind  = 1 // dialer -> listener: who I am and whom I want
	AcceptKind = 2 // listener -> dialer: link established
	RefuseKind = 3 // listener -> dialer: link refused, with a reason
)

// refusal codes carried by a refuse Handshake.
const (
	CodeNone       = 0
	CodeVersion    = 1
	CodeJob        = 2
	CodeGeneration = 3
	CodeTopology   = 4 // ranks or ring size disagree
	CodeMalformed  = 5
	CodeClosed     = 6
)

var handshakeMagic = [4]byte{'I', 'R', 'N', 'G'}

// handshakeFixed is the size of a Handshake before its variable strings.
const handshakeFixed = 4 + 2 + 1 + 1 + 8 + 4 + 4 + 4

// MaxHandshake bounds an encoded Handshake.
const MaxHandshake = handshakeFixed + 2 + allreduce.MaxJobID + 2 + MaxReason

// Handshake opens every link. Layout (little endian):
//
//	magic "IRNG" | version u16 | kind u8 | code u8 | generation u64 |
//	from u32 | to u32 | size u32 | len u16, job id | len u16, reason
type Handshake struct {
	Version    uint16
	Kind       uint8
	Code       uint8
	Generation uint64
	From, To   uint32 // ranks: the dialer (left) and the listener (right)
	Size       uint32 // ring size
	JobID      string
	Reason     string // refusals only
}

var (
	// ErrMalformed marks bytes from outside that do not decode.
	ErrMalformed = errors.New("malformed")
	// ErrLinkClosed is returned by a link closed locally.
	ErrLinkClosed = errors.New("link closed")
)

func (h *Handshake) Encode() []byte {
	job, reason := h.JobID, h.Reason
	if len(job) > allreduce.MaxJobID {
		job = job[:allreduce.MaxJobID]
	}
	if len(reason) > MaxReason {
		reason = reason[:MaxReason]
	}
	b := make([]byte, 0, handshakeFixed+4+len(job)+len(reason))
	b = append(b, handshakeMagic[:]...)
	b = binary.LittleEndian.AppendUint16(b, h.Version)
	b = append(b, h.Kind, h.Code)
	b = binary.LittleEndian.AppendUint64(b, h.Generation)
	b = binary.LittleEndian.AppendUint32(b, h.From)
	b = binary.LittleEndian.AppendUint32(b, h.To)
	b = binary.LittleEndian.AppendUint32(b, h.Size)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(job)))
	b = append(b, job...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(reason)))
	b = append(b, reason...)
	return b
}

// DecodeHandshake parses an encoded Handshake. It never reads out of
// bounds, refuses oversize strings and trailing bytes, and does not judge
// the version (the caller refuses a mismatch with a clear reason).
func DecodeHandshake(b []byte) (Handshake, error) {
	var h Handshake
	if len(b) < handshakeFixed+4 {
		return h, fmt.Errorf("Handshake of %d bytes: %w", len(b), ErrMalformed)
	}
	if len(b) > MaxHandshake {
		return h, fmt.Errorf("Handshake of %d bytes exceeds %d: %w", len(b), MaxHandshake, ErrMalformed)
	}
	if [4]byte(b[:4]) != handshakeMagic {
		return h, fmt.Errorf("Handshake magic %q: %w", b[:4], ErrMalformed)
	}
	h.Version = binary.LittleEndian.Uint16(b[4:])
	h.Kind, h.Code = b[6], b[7]
	h.Generation = binary.LittleEndian.Uint64(b[8:])
	h.From = binary.LittleEndian.Uint32(b[16:])
	h.To = binary.LittleEndian.Uint32(b[20:])
	h.Size = binary.LittleEndian.Uint32(b[24:])
	rest := b[handshakeFixed:]
	job, rest, err := takeString(rest, allreduce.MaxJobID)
	if err != nil {
		return h, fmt.Errorf("Handshake job id: %w", err)
	}
	reason, rest, err := takeString(rest, MaxReason)
	if err != nil {
		return h, fmt.Errorf("Handshake reason: %w", err)
	}
	if len(rest) != 0 {
		return h, fmt.Errorf("Handshake has %d trailing bytes: %w", len(rest), ErrMalformed)
	}
	if h.Kind < HelloKind || h.Kind > RefuseKind {
		return h, fmt.Errorf("Handshake kind %d: %w", h.Kind, ErrMalformed)
	}
	h.JobID, h.Reason = job, reason
	return h, nil
}

func takeString(b []byte, max int) (string, []byte, error) {
	if len(b) < 2 {
		return "", nil, fmt.Errorf("truncated length: %w", ErrMalformed)
	}
	n := int(binary.LittleEndian.Uint16(b))
	b = b[2:]
	if n > max {
		return "", nil, fmt.Errorf("string of %d bytes exceeds %d: %w", n, max, ErrMalformed)
	}
	if len(b) < n {
		return "", nil, fmt.Errorf("string of %d bytes truncated to %d: %w", n, len(b), ErrMalformed)
	}
	return string(b[:n]), b[n:], nil
}

// The plain TCP data plane: a connection starts with the 4-byte preface
// "IRNG" (which tells the shared listener it is not HTTP/2), then carries
// frames of
//
//	tag u64 | length u32 | payload
//
// The first frame from each side carries a Handshake.
const FrameHeader = 12

var Preface = handshakeMagic

// PutFrameHeader writes a frame header into h.
func PutFrameHeader(h *[FrameHeader]byte, tag uint64, n int) {
	binary.LittleEndian.PutUint64(h[0:], tag)
	binary.LittleEndian.PutUint32(h[8:], uint32(n))
}

// FrameReader decodes frames from a byte stream.
type FrameReader struct {
	R   io.Reader
	Hdr [FrameHeader]byte
}

// next reads one frame into dst and returns its tag and length. A frame
// longer than len(dst) or than max is an error (the stream is then
// unusable); so is a stream that ends inside a frame.
func (f *FrameReader) Next(dst []byte, max int) (tag uint64, n int, err error) {
	tag, n, err = f.Header(len(dst), max)
	if err != nil {
		return tag, 0, err
	}
	if _, err := io.ReadFull(f.R, dst[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return tag, 0, err
	}
	return tag, n, nil
}

// header reads a frame header and checks its length against room and max.
func (f *FrameReader) Header(room, max int) (tag uint64, n int, err error) {
	if _, err := io.ReadFull(f.R, f.Hdr[:]); err != nil {
		return 0, 0, err // io.EOF between frames: the peer closed cleanly
	}
	tag = binary.LittleEndian.Uint64(f.Hdr[0:])
	n64 := uint64(binary.LittleEndian.Uint32(f.Hdr[8:]))
	if n64 > uint64(max) || n64 > uint64(room) {
		return tag, 0, fmt.Errorf("frame of %d bytes exceeds %d: %w", n64, min(max, room), ErrMalformed)
	}
	return tag, int(n64), nil
}

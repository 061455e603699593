package allreduce

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ProtocolVersion is carried in every handshake; a peer speaking another
// version is refused.
const ProtocolVersion = 3

// handshake kinds.
const (
	helloKind  = 1 // dialer -> listener: who I am and whom I want
	acceptKind = 2 // listener -> dialer: link established
	refuseKind = 3 // listener -> dialer: link refused, with a reason
)

// refusal codes carried by a refuse handshake.
const (
	codeNone       = 0
	codeVersion    = 1
	codeJob        = 2
	codeGeneration = 3
	codeTopology   = 4 // ranks or ring size disagree
	codeMalformed  = 5
	codeClosed     = 6
)

var handshakeMagic = [4]byte{'I', 'R', 'N', 'G'}

// handshakeFixed is the size of a handshake before its variable strings.
const handshakeFixed = 4 + 2 + 1 + 1 + 8 + 4 + 4 + 4

// maxHandshake bounds an encoded handshake.
const maxHandshake = handshakeFixed + 2 + maxJobID + 2 + maxReason

// handshake opens every link. Layout (little endian):
//
//	magic "IRNG" | version u16 | kind u8 | code u8 | generation u64 |
//	from u32 | to u32 | size u32 | len u16, job id | len u16, reason
type handshake struct {
	Version    uint16
	Kind       uint8
	Code       uint8
	Generation uint64
	From, To   uint32 // ranks: the dialer (left) and the listener (right)
	Size       uint32 // ring size
	JobID      string
	Reason     string // refusals only
}

// errMalformed marks bytes from outside that do not decode.
var errMalformed = errors.New("malformed")

func (h *handshake) encode() []byte {
	job, reason := h.JobID, h.Reason
	if len(job) > maxJobID {
		job = job[:maxJobID]
	}
	if len(reason) > maxReason {
		reason = reason[:maxReason]
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

// decodeHandshake parses an encoded handshake. It never reads out of
// bounds, refuses oversize strings and trailing bytes, and does not judge
// the version (the caller refuses a mismatch with a clear reason).
func decodeHandshake(b []byte) (handshake, error) {
	var h handshake
	if len(b) < handshakeFixed+4 {
		return h, fmt.Errorf("handshake of %d bytes: %w", len(b), errMalformed)
	}
	if len(b) > maxHandshake {
		return h, fmt.Errorf("handshake of %d bytes exceeds %d: %w", len(b), maxHandshake, errMalformed)
	}
	if [4]byte(b[:4]) != handshakeMagic {
		return h, fmt.Errorf("handshake magic %q: %w", b[:4], errMalformed)
	}
	h.Version = binary.LittleEndian.Uint16(b[4:])
	h.Kind, h.Code = b[6], b[7]
	h.Generation = binary.LittleEndian.Uint64(b[8:])
	h.From = binary.LittleEndian.Uint32(b[16:])
	h.To = binary.LittleEndian.Uint32(b[20:])
	h.Size = binary.LittleEndian.Uint32(b[24:])
	rest := b[handshakeFixed:]
	job, rest, err := takeString(rest, maxJobID)
	if err != nil {
		return h, fmt.Errorf("handshake job id: %w", err)
	}
	reason, rest, err := takeString(rest, maxReason)
	if err != nil {
		return h, fmt.Errorf("handshake reason: %w", err)
	}
	if len(rest) != 0 {
		return h, fmt.Errorf("handshake has %d trailing bytes: %w", len(rest), errMalformed)
	}
	if h.Kind < helloKind || h.Kind > refuseKind {
		return h, fmt.Errorf("handshake kind %d: %w", h.Kind, errMalformed)
	}
	h.JobID, h.Reason = job, reason
	return h, nil
}

func takeString(b []byte, max int) (string, []byte, error) {
	if len(b) < 2 {
		return "", nil, fmt.Errorf("truncated length: %w", errMalformed)
	}
	n := int(binary.LittleEndian.Uint16(b))
	b = b[2:]
	if n > max {
		return "", nil, fmt.Errorf("string of %d bytes exceeds %d: %w", n, max, errMalformed)
	}
	if len(b) < n {
		return "", nil, fmt.Errorf("string of %d bytes truncated to %d: %w", n, len(b), errMalformed)
	}
	return string(b[:n]), b[n:], nil
}

// The plain TCP data plane: a connection starts with the 4-byte preface
// "IRNG" (which tells the shared listener it is not HTTP/2), then carries
// frames of
//
//	tag u64 | length u32 | payload
//
// The first frame from each side carries a handshake.
const frameHeader = 12

var tcpPreface = handshakeMagic

// putFrameHeader writes a frame header into h.
func putFrameHeader(h *[frameHeader]byte, tag uint64, n int) {
	binary.LittleEndian.PutUint64(h[0:], tag)
	binary.LittleEndian.PutUint32(h[8:], uint32(n))
}

// frameReader decodes frames from a byte stream.
type frameReader struct {
	r   io.Reader
	hdr [frameHeader]byte
}

// next reads one frame into dst and returns its tag and length. A frame
// longer than len(dst) or than max is an error (the stream is then
// unusable); so is a stream that ends inside a frame.
func (f *frameReader) next(dst []byte, max int) (tag uint64, n int, err error) {
	tag, n, err = f.header(len(dst), max)
	if err != nil {
		return tag, 0, err
	}
	if _, err := io.ReadFull(f.r, dst[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return tag, 0, err
	}
	return tag, n, nil
}

// header reads a frame header and checks its length against room and max.
func (f *frameReader) header(room, max int) (tag uint64, n int, err error) {
	if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
		return 0, 0, err // io.EOF between frames: the peer closed cleanly
	}
	tag = binary.LittleEndian.Uint64(f.hdr[0:])
	n64 := uint64(binary.LittleEndian.Uint32(f.hdr[8:]))
	if n64 > uint64(max) || n64 > uint64(room) {
		return tag, 0, fmt.Errorf("frame of %d bytes exceeds %d: %w", n64, min(max, room), errMalformed)
	}
	return tag, int(n64), nil
}

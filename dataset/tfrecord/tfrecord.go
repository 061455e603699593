package tfrecord

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MaskDelta is the constant added by the CRC mask.
const MaskDelta = 0xa282ead8

// MaskedCRC is the masked CRC-32C of b: rotate right by 15, add MaskDelta.
func MaskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return ((c >> 15) | (c << 17)) + MaskDelta
}

// MaxRecord bounds the length of one record.
const MaxRecord = 1 << 30

// Errors of the framing; each is wrapped with the offset it was found at.
var (
	ErrCRC       = errors.New("tfrecord: crc mismatch")
	ErrTruncated = errors.New("tfrecord: truncated record")
	ErrTooLarge  = errors.New("tfrecord: record too large")
	// ErrDataCRC is the CRC mismatch of a record's data (it wraps ErrCRC):
	// the record is lost but the next one can be read.
	ErrDataCRC = fmt.Errorf("%w of the data", ErrCRC)
)

// Writer writes TFRecord framing to an underlying writer.
type Writer struct {
	w   io.Writer
	off int64
	hdr [12]byte
}

// NewWriter returns a Writer to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Offset is the number of bytes written so far: the offset the next record
// starts at.
func (w *Writer) Offset() int64 { return w.off }

// Write writes one record holding data.
func (w *Writer) Write(data []byte) error {
	binary.LittleEndian.PutUint64(w.hdr[:8], uint64(len(data)))
	binary.LittleEndian.PutUint32(w.hdr[8:], MaskedCRC(w.hdr[:8]))
	var foot [4]byte
	binary.LittleEndian.PutUint32(foot[:], MaskedCRC(data))
	for _, b := range [][]byte{w.hdr[:], data, foot[:]} {
		n, err := w.w.Write(b)
		w.off += int64(n)
		if err != nil {
			return fmt.Errorf("tfrecord: write: %w", err)
		}
	}
	return nil
}

// Record locates one record in a file: the offset of its frame and the
// length of its data.
type Record struct {
	Offset int64
	Len    int64
}

// FrameLen is the size of a record's frame around its data.
const FrameLen = 16

// readHeader reads and checks a record header at the reader's position.
func readHeader(r io.Reader, off int64) (int64, error) {
	var hdr [12]byte
	n, err := io.ReadFull(r, hdr[:])
	if err == io.EOF {
		return 0, io.EOF
	}
	if err != nil {
		return 0, fmt.Errorf("%w: %d header bytes at offset %d", ErrTruncated, n, off)
	}
	if got, want := binary.LittleEndian.Uint32(hdr[8:]), MaskedCRC(hdr[:8]); got != want {
		return 0, fmt.Errorf("%w: length at offset %d (crc %08x, want %08x)", ErrCRC, off, got, want)
	}
	l := binary.LittleEndian.Uint64(hdr[:8])
	if l > MaxRecord {
		return 0, fmt.Errorf("%w: %d bytes at offset %d (limit %d)", ErrTooLarge, l, off, MaxRecord)
	}
	return int64(l), nil
}

// Reader reads records one after another.
type Reader struct {
	r   *bufio.Reader
	off int64
	// Verify checks the data CRC of each record (on by default).
	Verify bool
}

// NewReader returns a Reader of r that checks every CRC.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 1<<16), Verify: true} }

// Next returns the next record's data (valid until buf is reused) and its
// location; io.EOF at a clean end. A truncated record or a corrupt header
// returns an error wrapping ErrTruncated, ErrCRC or ErrTooLarge, after
// which the reader cannot go on. A record whose data does not match its
// CRC returns its location and an error wrapping ErrDataCRC, and the
// reader goes on with the next record.
func (r *Reader) Next(buf []byte) ([]byte, Record, error) {
	off := r.off
	l, err := readHeader(r.r, off)
	if err != nil {
		return nil, Record{}, err
	}
	buf, n, err := readData(r.r, l+4, buf)
	r.off += 12 + int64(n)
	if err != nil {
		return nil, Record{}, fmt.Errorf("%w: record at offset %d has %d of %d data bytes", ErrTruncated, off, max(n-4, 0), l)
	}
	data := buf[:l]
	if r.Verify {
		if got, want := binary.LittleEndian.Uint32(buf[l:]), MaskedCRC(data); got != want {
			return nil, Record{Offset: off, Len: l}, fmt.Errorf("%w: record at offset %d (crc %08x, want %08x)", ErrDataCRC, off, got, want)
		}
	}
	return data, Record{Offset: off, Len: l}, nil
}

// ReadAt reads the record whose frame starts at off and checks both CRCs.
// It returns the data in buf when buf has room.
func ReadAt(r io.ReaderAt, off int64, buf []byte) ([]byte, error) {
	l, err := readHeader(io.NewSectionReader(r, off, 12), off)
	if err == io.EOF {
		return nil, fmt.Errorf("%w: no record at offset %d", ErrTruncated, off)
	}
	if err != nil {
		return nil, err
	}
	buf, n, err := readData(io.NewSectionReader(r, off+12, l+4), l+4, buf)
	if err != nil {
		return nil, fmt.Errorf("%w: record at offset %d has %d of %d data bytes (%v)", ErrTruncated, off, max(n-4, 0), l, err)
	}
	if got, want := binary.LittleEndian.Uint32(buf[l:]), MaskedCRC(buf[:l]); got != want {
		return nil, fmt.Errorf("%w: record at offset %d (crc %08x, want %08x)", ErrDataCRC, off, got, want)
	}
	return buf[:l], nil
}

// readData reads n bytes into buf (grown if needed). Above a megabyte, a
// buffer is grown as the bytes arrive, so that a corrupt length costs no
// more memory than the file holds.
func readData(r io.Reader, n int64, buf []byte) ([]byte, int, error) {
	if int64(cap(buf)) >= n || n <= 1<<20 {
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		k, err := io.ReadFull(r, buf)
		return buf, k, err
	}
	b, err := io.ReadAll(io.LimitReader(r, n))
	if err == nil && int64(len(b)) < n {
		err = io.ErrUnexpectedEOF
	}
	return b, len(b), err
}

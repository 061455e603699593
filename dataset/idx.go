package dataset

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
)

// MaxIDXBytes is the largest payload ReadIDX accepts: 2 GiB. A header that
// asks for more is refused before anything is allocated.
const MaxIDXBytes = 1 << 31

// typeUByte is the idx element-type code of unsigned bytes, the only type
// this package reads.
const typeUByte = 0x08

// idxTypeNames names the element types of the idx format, for error messages.
var idxTypeNames = map[byte]string{
	0x08: "unsigned byte",
	0x09: "signed byte",
	0x0B: "int16",
	0x0C: "int32",
	0x0D: "float32",
	0x0E: "float64",
}

// IDX is a decoded idx file: an array of unsigned bytes with shape Dims,
// stored row-major in Data (len(Data) is the product of Dims).
type IDX struct {
	Dims []int
	Data []byte
}

// shape formats dims as 60000×28×28.
func shape(dims []int) string {
	s := make([]string, len(dims))
	for i, d := range dims {
		s[i] = strconv.Itoa(d)
	}
	return strings.Join(s, "×")
}

// ReadIDX decodes one unsigned-byte idx file (the format of MNIST) from r.
// If r starts with the gzip magic (1f 8b) it is decompressed first.
//
// The format is a 4-byte magic 00 00 08 n, then n big-endian uint32
// dimensions, then the product of the dimensions in bytes. ReadIDX checks
// every part of it: the magic, the element type (only 0x08), that n ≥ 1, that
// every dimension but the first (the count, which may be 0) is positive, that
// the payload is at most MaxIDXBytes (before allocating), and that the
// payload is exactly as long as the header says: a short file and trailing
// bytes are both errors. With gzip input the checksum is verified too.
func ReadIDX(r io.Reader) (*IDX, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if m, err := br.Peek(2); err == nil && m[0] == 0x1f && m[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("idx: gzip: %w", err)
		}
		defer zr.Close()
		x, err := readIDX(bufio.NewReaderSize(zr, 64<<10))
		if err != nil {
			return nil, fmt.Errorf("idx: gzip content: %w", err)
		}
		return x, nil
	}
	x, err := readIDX(br)
	if err != nil {
		return nil, fmt.Errorf("idx: %w", err)
	}
	return x, nil
}

// readIDX decodes the uncompressed idx stream r. Its errors have no "idx:"
// prefix; ReadIDX adds it.
func readIDX(r io.Reader) (*IDX, error) {
	var magic [4]byte
	if n, err := io.ReadFull(r, magic[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("truncated: %d of the 4 bytes of the magic number", n)
		}
		return nil, fmt.Errorf("reading magic number: %w", err)
	}
	if magic[0] != 0 || magic[1] != 0 {
		return nil, fmt.Errorf("bad magic number %02x %02x %02x %02x: an idx file starts with 00 00 08 <ndim>; is this an idx file?",
			magic[0], magic[1], magic[2], magic[3])
	}
	if magic[2] != typeUByte {
		name, ok := idxTypeNames[magic[2]]
		if !ok {
			name = "unknown"
		}
		return nil, fmt.Errorf("element type 0x%02x (%s) is not supported: only unsigned-byte idx (type 0x08) can be read", magic[2], name)
	}
	ndim := int(magic[3])
	if ndim == 0 {
		return nil, errors.New("header has 0 dimensions: want at least 1")
	}
	hdr := make([]byte, 4*ndim)
	if n, err := io.ReadFull(r, hdr); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("truncated: header says %d dimensions (%d bytes), file has %d of them", ndim, 4*ndim, n)
		}
		return nil, fmt.Errorf("reading dimensions: %w", err)
	}
	dims := make([]int, ndim)
	size := uint64(1)
	for i := range dims {
		d := binary.BigEndian.Uint32(hdr[4*i:])
		dims[i] = int(d)
		if d == 0 && i > 0 {
			return nil, fmt.Errorf("dimension %d of %s is 0: only the first (the count) may be 0", i, shape(dims[:i+1]))
		}
		// size ≤ MaxIDXBytes < 2^32 before the product and d < 2^32, so
		// the product fits in 64 bits.
		size *= uint64(d)
		if size > MaxIDXBytes {
			return nil, fmt.Errorf("header asks for more than the limit of %d bytes (dimensions so far %s)", uint64(MaxIDXBytes), shape(dims[:i+1]))
		}
	}
	data, err := readExact(r, int(size))
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("truncated: header says %s = %d bytes, file has %d", shape(dims), size, len(data))
		}
		return nil, fmt.Errorf("reading %s = %d bytes of data after %d: %w", shape(dims), size, len(data), err)
	}
	// The stream must end here. Reading to the end also makes a gzip
	// reader verify its checksum.
	const countLimit = 1 << 20
	extra, err := io.Copy(io.Discard, io.LimitReader(r, countLimit+1))
	if err != nil {
		return nil, fmt.Errorf("after the %d bytes of data: %w", size, err)
	}
	if extra > countLimit {
		return nil, fmt.Errorf("more than %d trailing bytes after the %s = %d bytes the header declares", countLimit, shape(dims), size)
	}
	if extra > 0 {
		return nil, fmt.Errorf("%d trailing bytes after the %s = %d bytes the header declares", extra, shape(dims), size)
	}
	return &IDX{Dims: dims, Data: data}, nil
}

// readExact reads exactly n bytes from r. The buffer grows as data arrives
// (capped at n), so a header that lies about its size cannot make it
// allocate much more than the input holds. On a short read it returns what
// it got and io.ErrUnexpectedEOF.
func readExact(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, 1<<20))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(n, 2*cap(buf)))
			copy(grown, buf)
			buf = grown
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			if len(buf) < n {
				return buf, io.ErrUnexpectedEOF
			}
			break
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// ReadIDXFile reads the idx file at path with ReadIDX (gzip or not); its
// errors name the path.
func ReadIDXFile(path string) (*IDX, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *PathError names the path
	}
	defer f.Close()
	x, err := ReadIDX(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return x, nil
}

// WriteIDX writes data as an uncompressed unsigned-byte idx file with shape
// dims, the inverse of ReadIDX. It is meant for preparing data sets for the
// "idx:DIR" form of Load and for tests.
func WriteIDX(w io.Writer, dims []int, data []byte) error {
	if len(dims) < 1 || len(dims) > 255 {
		return fmt.Errorf("idx: %d dimensions: want 1 to 255", len(dims))
	}
	size := uint64(1)
	for i, d := range dims {
		if d < 0 || uint64(d) > 1<<32-1 || (d == 0 && i > 0) {
			return fmt.Errorf("idx: bad dimension %d of %v", i, dims)
		}
		size *= uint64(d)
		if size > MaxIDXBytes {
			return fmt.Errorf("idx: shape %s exceeds the limit of %d bytes", shape(dims), uint64(MaxIDXBytes))
		}
	}
	if uint64(len(data)) != size {
		return fmt.Errorf("idx: shape %s needs %d bytes, data has %d", shape(dims), size, len(data))
	}
	hdr := make([]byte, 4+4*len(dims))
	hdr[2], hdr[3] = typeUByte, byte(len(dims))
	for i, d := range dims {
		binary.BigEndian.PutUint32(hdr[4+4*i:], uint32(d))
	}
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("idx: writing header: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("idx: writing data: %w", err)
	}
	return nil
}

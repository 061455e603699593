package npy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Magic starts every .npy file.
const Magic = "\x93NUMPY"

// MaxElements bounds the number of values of an array Read accepts.
const MaxElements = 1 << 28

// ErrFormat is wrapped by every error about malformed or refused input.
var ErrFormat = errors.New("npy: bad format")

// Array is a decoded array: its dtype ("<f4", "<f8", "|i1", "<i2", "<i4",
// "<i8", "|u1"), its shape (C order) and its raw little-endian data.
type Array struct {
	DType string
	Shape []int
	Data  []byte
}

// itemSize is the byte size of the accepted dtypes.
var itemSize = map[string]int{"<f4": 4, "<f8": 8, "|i1": 1, "<i2": 2, "<i4": 4, "<i8": 8, "|u1": 1}

// Len is the number of values, the product of the shape.
func (a *Array) Len() int {
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

// Float32 appends the values of a, converted to float32, to dst.
func (a *Array) Float32(dst []float32) []float32 {
	n, d := a.Len(), a.Data
	for i := range n {
		var v float32
		switch a.DType {
		case "<f4":
			v = math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:]))
		case "<f8":
			v = float32(math.Float64frombits(binary.LittleEndian.Uint64(d[8*i:])))
		case "|i1":
			v = float32(int8(d[i]))
		case "|u1":
			v = float32(d[i])
		case "<i2":
			v = float32(int16(binary.LittleEndian.Uint16(d[2*i:])))
		case "<i4":
			v = float32(int32(binary.LittleEndian.Uint32(d[4*i:])))
		case "<i8":
			v = float32(int64(binary.LittleEndian.Uint64(d[8*i:])))
		}
		dst = append(dst, v)
	}
	return dst
}

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// Read decodes one .npy array from r.
func Read(r io.Reader) (*Array, error) {
	var pre [10]byte
	if _, err := io.ReadFull(r, pre[:8]); err != nil {
		return nil, bad("short preamble: %v", err)
	}
	if string(pre[:6]) != Magic {
		return nil, bad("magic %q, want %q", pre[:6], Magic)
	}
	var hlen int
	switch pre[6] {
	case 1:
		if _, err := io.ReadFull(r, pre[8:10]); err != nil {
			return nil, bad("short header length: %v", err)
		}
		hlen = int(binary.LittleEndian.Uint16(pre[8:10]))
	case 2, 3:
		var l [4]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return nil, bad("short header length: %v", err)
		}
		hlen = int(binary.LittleEndian.Uint32(l[:]))
	default:
		return nil, bad("format version %d.%d, want 1.0, 2.0 or 3.0", pre[6], pre[7])
	}
	if hlen > 1<<16 {
		return nil, bad("header of %d bytes, want at most 65536", hlen)
	}
	h := make([]byte, hlen)
	if _, err := io.ReadFull(r, h); err != nil {
		return nil, bad("short header: %v", err)
	}
	a, err := ParseHeader(string(h))
	if err != nil {
		return nil, err
	}
	// Read what is there before trusting the header's size with an
	// allocation: a short file costs only its own length.
	n := int64(a.Len()) * int64(itemSize[a.DType])
	data, err := io.ReadAll(io.LimitReader(r, n))
	if err != nil || int64(len(data)) != n {
		return nil, bad("data of shape %v (%s) needs %d bytes, found %d (%v)", a.Shape, a.DType, n, len(data), err)
	}
	a.Data = data
	return a, nil
}

// Decode decodes a whole .npy file held in memory; trailing bytes are an
// error.
func Decode(b []byte) (*Array, error) {
	r := bytes.NewReader(b)
	a, err := Read(r)
	if err != nil {
		return nil, err
	}
	if r.Len() != 0 {
		return nil, bad("%d bytes after the data", r.Len())
	}
	return a, nil
}

// ParseHeader parses the header dict and checks it: dtype accepted,
// fortran_order False, shape of non-negative sizes with at most
// MaxElements values. The returned array has no data.
func ParseHeader(h string) (*Array, error) {
	s := strings.TrimRight(h, " \n\x00")
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return nil, bad("header %q is not a dict", trim(s))
	}
	s = s[1 : len(s)-1]
	var (
		a                         Array
		haveD, haveF, haveS, fort bool
	)
	for {
		s = strings.TrimLeft(s, " ,")
		if s == "" {
			break
		}
		key, rest, err := pyString(s)
		if err != nil {
			return nil, err
		}
		rest = strings.TrimLeft(rest, " ")
		if !strings.HasPrefix(rest, ":") {
			return nil, bad("no ':' after key %q", key)
		}
		rest = strings.TrimLeft(rest[1:], " ")
		switch key {
		case "descr":
			if a.DType, rest, err = pyString(rest); err != nil {
				return nil, err
			}
			haveD = true
		case "fortran_order":
			switch {
			case strings.HasPrefix(rest, "False"):
				rest = rest[5:]
			case strings.HasPrefix(rest, "True"):
				fort, rest = true, rest[4:]
			default:
				return nil, bad("fortran_order is neither True nor False")
			}
			haveF = true
		case "shape":
			if a.Shape, rest, err = pyTuple(rest); err != nil {
				return nil, err
			}
			haveS = true
		default:
			return nil, bad("unknown header key %q", key)
		}
		s = rest
	}
	if !haveD || !haveF || !haveS {
		return nil, bad("header lacks descr, fortran_order or shape")
	}
	if fort {
		return nil, bad("fortran_order True: only C-order arrays are read (save with np.ascontiguousarray)")
	}
	if _, ok := itemSize[a.DType]; !ok {
		return nil, bad("dtype %q: want little-endian float32 (<f4), float64 (<f8), int (<i2, <i4, <i8, |i1) or uint8 (|u1)", a.DType)
	}
	n := 1
	for _, d := range a.Shape {
		if d < 0 || (d > 0 && n > MaxElements/d) {
			return nil, bad("shape %v: sizes must be ≥ 0 with at most %d values", a.Shape, MaxElements)
		}
		n *= d
	}
	return &a, nil
}

func trim(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// pyString reads a quoted Python string literal (no escapes) at the start
// of s.
func pyString(s string) (string, string, error) {
	if s == "" || (s[0] != '\'' && s[0] != '"') {
		return "", "", bad("want a quoted string at %q", trim(s))
	}
	end := strings.IndexByte(s[1:], s[0])
	if end < 0 {
		return "", "", bad("unterminated string at %q", trim(s))
	}
	return s[1 : 1+end], s[2+end:], nil
}

// pyTuple reads a tuple of integers "(3, 4)", "(5,)" or "()".
func pyTuple(s string) ([]int, string, error) {
	if !strings.HasPrefix(s, "(") {
		return nil, "", bad("shape is not a tuple at %q", trim(s))
	}
	end := strings.IndexByte(s, ')')
	if end < 0 {
		return nil, "", bad("unterminated shape tuple")
	}
	shape := []int{}
	for _, f := range strings.Split(s[1:end], ",") {
		f = strings.TrimSpace(f)
		f = strings.TrimSuffix(f, "L") // Python 2 longs
		if f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil {
			return nil, "", bad("shape entry %q is not an integer", f)
		}
		shape = append(shape, v)
	}
	return shape, s[end+1:], nil
}

// Number is a type Write can store.
type Number interface {
	float32 | float64 | int8 | int16 | int32 | int64 | uint8
}

// Write encodes data, of the given shape in C order, as a version 1.0 .npy
// array (version 2.0 if the header needs it).
func Write[T Number](w io.Writer, shape []int, data []T) error {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return fmt.Errorf("npy: write: negative size in shape %v", shape)
		}
		n *= d
	}
	if n != len(data) {
		return fmt.Errorf("npy: write: shape %v holds %d values, data has %d", shape, n, len(data))
	}
	var descr string
	var size int
	switch any(data).(type) {
	case []float32:
		descr, size = "<f4", 4
	case []float64:
		descr, size = "<f8", 8
	case []int8:
		descr, size = "|i1", 1
	case []int16:
		descr, size = "<i2", 2
	case []int32:
		descr, size = "<i4", 4
	case []int64:
		descr, size = "<i8", 8
	case []uint8:
		descr, size = "|u1", 1
	}
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	tuple := "(" + strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	tuple += ")"
	h := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, tuple)
	// Pad with spaces so that magic + version + length + header + '\n' is
	// a multiple of 64 bytes.
	pre := 10
	version := byte(1)
	if len(h)+1+pre > 65535 {
		pre, version = 12, 2
	}
	pad := (64 - (pre+len(h)+1)%64) % 64
	h += strings.Repeat(" ", pad) + "\n"
	var buf bytes.Buffer
	buf.WriteString(Magic)
	buf.WriteByte(version)
	buf.WriteByte(0)
	if version == 1 {
		buf.Write(binary.LittleEndian.AppendUint16(nil, uint16(len(h))))
	} else {
		buf.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(h))))
	}
	buf.WriteString(h)
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("npy: write: %w", err)
	}
	raw := make([]byte, 0, size*len(data))
	for _, v := range data {
		switch x := any(v).(type) {
		case float32:
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(x))
		case float64:
			raw = binary.LittleEndian.AppendUint64(raw, math.Float64bits(x))
		case int8:
			raw = append(raw, byte(x))
		case int16:
			raw = binary.LittleEndian.AppendUint16(raw, uint16(x))
		case int32:
			raw = binary.LittleEndian.AppendUint32(raw, uint32(x))
		case int64:
			raw = binary.LittleEndian.AppendUint64(raw, uint64(x))
		case uint8:
			raw = append(raw, x)
		}
	}
	if _, err := w.Write(raw); err != nil {
		return fmt.Errorf("npy: write: %w", err)
	}
	return nil
}

package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// DType is a tensor's element type as the header names it.
type DType string

// The supported element types.
const (
	F32 DType = "F32"
	F64 DType = "F64"
	I32 DType = "I32"
	I64 DType = "I64"
)

// Size is the number of bytes of one element, 0 for an unsupported dtype.
func (d DType) Size() int {
	switch d {
	case F32, I32:
		return 4
	case F64, I64:
		return 8
	}
	return 0
}

// MaxHeader is the largest header Decode accepts (100 MB, as the reference
// implementation).
const MaxHeader = 100 << 20

// Tensor is one named array: Data holds its elements little-endian in C
// order.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// Elements is the product of the shape (1 for a scalar of shape []).
func (t Tensor) Elements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// FromFloat32 is a tensor of dtype F32 holding v in the given shape.
func FromFloat32(name string, shape []int, v []float32) Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return Tensor{Name: name, DType: F32, Shape: slices.Clone(shape), Data: b}
}

// FromFloat64 is a tensor of dtype F64 holding v in the given shape.
func FromFloat64(name string, shape []int, v []float64) Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return Tensor{Name: name, DType: F64, Shape: slices.Clone(shape), Data: b}
}

// FromInt64 is a tensor of dtype I64 holding v in the given shape.
func FromInt64(name string, shape []int, v []int64) Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return Tensor{Name: name, DType: I64, Shape: slices.Clone(shape), Data: b}
}

// Float32 returns the elements of an F32 tensor (F64 ones are rounded).
func (t Tensor) Float32() ([]float32, error) {
	switch t.DType {
	case F32:
		v := make([]float32, len(t.Data)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
		return v, nil
	case F64:
		w, err := t.Float64()
		if err != nil {
			return nil, err
		}
		v := make([]float32, len(w))
		for i, x := range w {
			v[i] = float32(x)
		}
		return v, nil
	}
	return nil, fmt.Errorf("safetensors: tensor %q has dtype %s, want F32 or F64", t.Name, t.DType)
}

// Float64 returns the elements of an F64 or F32 tensor as float64.
func (t Tensor) Float64() ([]float64, error) {
	switch t.DType {
	case F64:
		v := make([]float64, len(t.Data)/8)
		for i := range v {
			v[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:]))
		}
		return v, nil
	case F32:
		v := make([]float64, len(t.Data)/4)
		for i := range v {
			v[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:])))
		}
		return v, nil
	}
	return nil, fmt.Errorf("safetensors: tensor %q has dtype %s, want F64 or F32", t.Name, t.DType)
}

// Int64 returns the elements of an I64 or I32 tensor as int64.
func (t Tensor) Int64() ([]int64, error) {
	switch t.DType {
	case I64:
		v := make([]int64, len(t.Data)/8)
		for i := range v {
			v[i] = int64(binary.LittleEndian.Uint64(t.Data[8*i:]))
		}
		return v, nil
	case I32:
		v := make([]int64, len(t.Data)/4)
		for i := range v {
			v[i] = int64(int32(binary.LittleEndian.Uint32(t.Data[4*i:])))
		}
		return v, nil
	}
	return nil, fmt.Errorf("safetensors: tensor %q has dtype %s, want I64 or I32", t.Name, t.DType)
}

// File is a decoded safetensors file: its tensors in the order of their
// data, and the string metadata of the header.
type File struct {
	Tensors  []Tensor
	Metadata map[string]string
}

// Get returns the tensor called name.
func (f *File) Get(name string) (Tensor, bool) {
	for _, t := range f.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

// Names lists the tensors' names in the order of their data.
func (f *File) Names() []string {
	n := make([]string, len(f.Tensors))
	for i, t := range f.Tensors {
		n[i] = t.Name
	}
	return n
}

// entry is one tensor's line of the header.
type entry struct {
	DType   DType    `json:"dtype"`
	Shape   []int    `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

const metadataKey = "__metadata__"

// Write encodes tensors, their data in the order given, and metadata (nil
// for none) as a safetensors file. Names must be unique and not
// "__metadata__", and each tensor's Data must hold its shape's elements.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	header := make(map[string]any, len(tensors)+1)
	if len(metadata) > 0 {
		header[metadataKey] = metadata
	}
	var off int64
	for _, t := range tensors {
		if t.Name == "" || t.Name == metadataKey {
			return fmt.Errorf("safetensors: write: tensor name %q is reserved or empty", t.Name)
		}
		if _, dup := header[t.Name]; dup {
			return fmt.Errorf("safetensors: write: tensor %q twice", t.Name)
		}
		if t.DType.Size() == 0 {
			return fmt.Errorf("safetensors: write: tensor %q: unsupported dtype %q", t.Name, t.DType)
		}
		n, ok := elements(t.Shape)
		if !ok || n*t.DType.Size() != len(t.Data) {
			return fmt.Errorf("safetensors: write: tensor %q: shape %v of %s needs %d bytes, data has %d", t.Name, t.Shape, t.DType, n*t.DType.Size(), len(t.Data))
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[t.Name] = entry{DType: t.DType, Shape: shape, Offsets: [2]int64{off, off + int64(len(t.Data))}}
		off += int64(len(t.Data))
	}
	h, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("safetensors: write: header: %w", err)
	}
	if pad := (8 - len(h)%8) % 8; pad > 0 {
		h = append(h, bytes.Repeat([]byte{' '}, pad)...)
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(h)))
	if _, err := w.Write(n[:]); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	if _, err := w.Write(h); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	for _, t := range tensors {
		if _, err := w.Write(t.Data); err != nil {
			return fmt.Errorf("safetensors: write: tensor %q: %w", t.Name, err)
		}
	}
	return nil
}

// maxElements bounds the elements of one tensor (2⁴⁸), far above any
// file that fits in memory, so that the byte count cannot overflow.
const maxElements = 1 << 48

// elements is the product of shape, false on a negative size or overflow.
func elements(shape []int) (int, bool) {
	n := 1
	for _, d := range shape {
		if d < 0 || (d > 0 && n > maxElements/d) {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// ErrFormat is wrapped by every error of Decode about the file's content.
var ErrFormat = errors.New("safetensors: malformed file")

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// Read reads a whole safetensors file from r and decodes it.
func Read(r io.Reader) (*File, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("safetensors: read: %w", err)
	}
	return Decode(b)
}

// Decode parses a safetensors file held in b. The tensors' Data are views
// into b.
func Decode(b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, bad("%d bytes, shorter than the 8-byte header length", len(b))
	}
	hn := binary.LittleEndian.Uint64(b)
	if hn > MaxHeader {
		return nil, bad("header of %d bytes, more than the %d allowed", hn, MaxHeader)
	}
	if hn > uint64(len(b)-8) {
		return nil, bad("header of %d bytes, but only %d follow (truncated file?)", hn, len(b)-8)
	}
	h, data := b[8:8+hn], b[8+hn:]
	if len(h) == 0 || h[0] != '{' {
		return nil, bad("header does not start with '{'")
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(h))
	if err := dec.Decode(&raw); err != nil {
		return nil, bad("header: %v", err)
	}
	if rest := strings.TrimRight(string(h[dec.InputOffset():]), " \t\r\n\x00"); rest != "" {
		return nil, bad("header has %d bytes after its JSON object", len(rest))
	}
	f := &File{}
	type placed struct {
		t  Tensor
		lo int64
	}
	var ts []placed
	for name, msg := range raw {
		if name == metadataKey {
			if err := json.Unmarshal(msg, &f.Metadata); err != nil {
				return nil, bad("__metadata__ is not an object of strings: %v", err)
			}
			continue
		}
		if name == "" {
			return nil, bad("a tensor has an empty name")
		}
		var e entry
		d := json.NewDecoder(bytes.NewReader(msg))
		d.DisallowUnknownFields()
		if err := d.Decode(&e); err != nil {
			return nil, bad("tensor %q: %v", name, err)
		}
		if e.DType.Size() == 0 {
			return nil, bad("tensor %q: unsupported dtype %q (want F32, F64, I32 or I64)", name, e.DType)
		}
		n, ok := elements(e.Shape)
		if !ok {
			return nil, bad("tensor %q: shape %v is negative or too large", name, e.Shape)
		}
		lo, hi := e.Offsets[0], e.Offsets[1]
		if lo < 0 || hi < lo || hi > int64(len(data)) {
			return nil, bad("tensor %q: data_offsets [%d, %d) outside the %d bytes of data", name, lo, hi, len(data))
		}
		if hi-lo != int64(n)*int64(e.DType.Size()) {
			return nil, bad("tensor %q: shape %v of %s needs %d bytes, data_offsets hold %d", name, e.Shape, e.DType, n*e.DType.Size(), hi-lo)
		}
		ts = append(ts, placed{Tensor{Name: name, DType: e.DType, Shape: e.Shape, Data: data[lo:hi:hi]}, lo})
	}
	// The byte ranges must tile the data: sorted by offset, each begins
	// where the previous ended, and the last ends at the end.
	slices.SortFunc(ts, func(a, b placed) int {
		if a.lo != b.lo {
			return cmp.Compare(a.lo, b.lo)
		}
		return cmp.Compare(len(a.t.Data), len(b.t.Data))
	})
	var at int64
	for _, p := range ts {
		if p.lo != at {
			return nil, bad("tensor %q begins at byte %d of the data, want %d (holes and overlaps are not allowed)", p.t.Name, p.lo, at)
		}
		at += int64(len(p.t.Data))
		f.Tensors = append(f.Tensors, p.t)
	}
	if at != int64(len(data)) {
		return nil, bad("tensors cover %d bytes of data, the file holds %d", at, len(data))
	}
	return f, nil
}

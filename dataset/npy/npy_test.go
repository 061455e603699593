package npy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

func roundTrip[T Number](t *testing.T, shape []int, data []T) {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, shape, data); err != nil {
		t.Fatal(err)
	}
	a, err := Decode(buf.Bytes())
	if err != nil {
		t.Fatalf("%T: %v", data, err)
	}
	if !slices.Equal(a.Shape, shape) {
		t.Errorf("%T: shape %v, want %v", data, a.Shape, shape)
	}
	got := a.Float32(nil)
	for i, v := range data {
		if got[i] != float32(v) {
			t.Errorf("%T: value %d = %v, want %v", data, i, got[i], v)
		}
	}
	// The header is padded so that the data starts on a 64-byte boundary.
	if off := buf.Len() - len(a.Data); off%64 != 0 {
		t.Errorf("%T: data starts at %d, not a multiple of 64", data, off)
	}
}

func TestRoundTrip(t *testing.T) {
	roundTrip(t, []int{2, 3}, []float32{1, -2, 3.5, 0, math.MaxFloat32, -1e-30})
	roundTrip(t, []int{4}, []float64{1, -2, 3.25, 1e300})
	roundTrip(t, []int{3}, []int64{-1, 0, 1 << 40})
	roundTrip(t, []int{3}, []int32{-7, 0, 7})
	roundTrip(t, []int{2}, []int16{-300, 300})
	roundTrip(t, []int{2}, []int8{-128, 127})
	roundTrip(t, []int{1, 1, 2}, []uint8{0, 255})
	roundTrip(t, []int{}, []float32{42})
}

// numpyHeader is the header of a (2, 3) float32 array in the form numpy's
// format.py writes it (keys sorted, a trailing ", ", then spaces and a
// newline up to a multiple of 64 bytes, which file adds).
const numpyHeader = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"

func file(version byte, header string, data []byte) []byte {
	b := []byte(Magic)
	b = append(b, version, 0)
	h := header + strings.Repeat(" ", (64-(10+len(header)+1)%64)%64) + "\n"
	if version == 1 {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(h)))
	} else {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(h)))
	}
	return append(append(b, h...), data...)
}

func TestReadNumpyBytes(t *testing.T) {
	data := make([]byte, 24)
	for i := range 6 {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(float32(i)))
	}
	for _, v := range []byte{1, 2, 3} {
		a, err := Decode(file(v, numpyHeader, data))
		if err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
		if got := a.Float32(nil); !slices.Equal(got, []float32{0, 1, 2, 3, 4, 5}) || !slices.Equal(a.Shape, []int{2, 3}) {
			t.Errorf("version %d: %v %v", v, a.Shape, got)
		}
	}
	// Keys in another order and a one-element tuple.
	a, err := Decode(file(1, "{'shape': (2,), 'fortran_order': False, 'descr': '<i8'}", make([]byte, 16)))
	if err != nil || !slices.Equal(a.Shape, []int{2}) {
		t.Fatalf("reordered header: %v %v", a, err)
	}
}

func TestRefuses(t *testing.T) {
	for _, c := range []struct{ name, header, want string }{
		{"fortran", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", "fortran_order True"},
		{"big-endian", "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", `dtype ">f4"`},
		{"complex", "{'descr': '<c8', 'fortran_order': False, 'shape': (2, 3), }", `dtype "<c8"`},
		{"object", "{'descr': '|O', 'fortran_order': False, 'shape': (2, 3), }", `dtype "|O"`},
		{"structured", "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3), }", "quoted string"},
		{"negative", "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }", "sizes must be"},
		{"huge", "{'descr': '<f4', 'fortran_order': False, 'shape': (65536, 65536), }", "sizes must be"},
		{"missing", "{'descr': '<f4', 'shape': (2, 3), }", "lacks"},
		{"not a dict", "'descr'", "not a dict"},
	} {
		_, err := Decode(file(1, c.header, make([]byte, 24)))
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one with %q", c.name, err, c.want)
		}
	}
	if _, err := Decode([]byte("PK\x03\x04 not numpy")); !errors.Is(err, ErrFormat) {
		t.Errorf("bad magic: %v", err)
	}
	if _, err := Decode(file(1, numpyHeader, make([]byte, 23))); !errors.Is(err, ErrFormat) {
		t.Errorf("short data: %v", err)
	}
	if _, err := Decode(file(1, numpyHeader, make([]byte, 25))); !errors.Is(err, ErrFormat) {
		t.Errorf("trailing data: %v", err)
	}
	if err := Write(&bytes.Buffer{}, []int{2, 2}, []float32{1, 2, 3}); err == nil {
		t.Error("Write of a wrong shape succeeded")
	}
}

func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	_ = Write(&buf, []int{2, 2}, []float32{1, 2, 3, 4})
	f.Add(buf.Bytes())
	f.Add(file(2, numpyHeader, make([]byte, 24)))
	f.Add(file(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (), }", []byte{7}))
	f.Add([]byte(Magic + "\x01\x00\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		if len(a.Data) != a.Len()*itemSize[a.DType] {
			t.Fatalf("%d data bytes for shape %v of %s", len(a.Data), a.Shape, a.DType)
		}
		if got := a.Float32(nil); len(got) != a.Len() {
			t.Fatalf("Float32 gave %d values, want %d", len(got), a.Len())
		}
	})
}

func ExampleWrite() {
	var buf bytes.Buffer
	if err := Write(&buf, []int{2, 3}, []float32{1, 2, 3, 4, 5, 6}); err != nil {
		fmt.Println(err)
		return
	}
	a, err := Decode(buf.Bytes())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(a.DType, a.Shape, a.Float32(nil))
	// Output: <f4 [2 3] [1 2 3 4 5 6]
}

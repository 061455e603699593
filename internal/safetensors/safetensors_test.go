package safetensors

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

func TestRoundTrip(t *testing.T) {
	in := []Tensor{
		FromFloat32("a.weight", []int{2, 3}, []float32{1, -2, 3.5, float32(math.Inf(1)), 0, -0.25}),
		FromFloat64("b", []int{3}, []float64{math.Pi, -1e300, 5e-324}),
		FromInt64("ids", []int{2, 2}, []int64{0, -1, math.MaxInt64, math.MinInt64}),
		FromFloat32("scalar", []int{}, []float32{7}),
		FromFloat32("empty", []int{0, 4}, nil),
	}
	meta := map[string]string{"format": "pt", "model": `{"dim":3}`}
	var buf bytes.Buffer
	if err := Write(&buf, in, meta); err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint64(buf.Bytes()); n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	f, err := Decode(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.Metadata) != fmt.Sprint(meta) {
		t.Errorf("metadata %v, want %v", f.Metadata, meta)
	}
	if len(f.Tensors) != len(in) {
		t.Fatalf("%d tensors, want %d", len(f.Tensors), len(in))
	}
	for _, want := range in {
		got, ok := f.Get(want.Name)
		if !ok {
			t.Fatalf("tensor %q missing", want.Name)
		}
		if got.DType != want.DType || !slices.Equal(got.Shape, want.Shape) || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("tensor %q: got %s %v %x, want %s %v %x", want.Name, got.DType, got.Shape, got.Data, want.DType, want.Shape, want.Data)
		}
	}
	a, _ := f.Get("a.weight")
	if v, err := a.Float32(); err != nil || v[2] != 3.5 || !math.IsInf(float64(v[3]), 1) {
		t.Errorf("a.weight as float32: %v, %v", v, err)
	}
	ids, _ := f.Get("ids")
	if v, err := ids.Int64(); err != nil || v[2] != math.MaxInt64 || v[3] != math.MinInt64 {
		t.Errorf("ids as int64: %v, %v", v, err)
	}
	if _, err := ids.Float32(); err == nil {
		t.Error("an I64 tensor read as float32 without error")
	}
}

// file builds a safetensors file from a raw header and data.
func file(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), data...)
}

func TestRefuses(t *testing.T) {
	four := make([]byte, 4)
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"short", []byte{1, 2, 3}, "shorter than"},
		{"header past the end", file(`{}`, nil)[:9], "truncated"},
		{"huge header", binary.LittleEndian.AppendUint64(nil, MaxHeader+1), "more than"},
		{"not an object", file(`[]`, nil), "'{'"},
		{"bad json", file(`{"a":`, nil), "header"},
		{"trailing bytes", file(`{} x`, nil), "after its JSON"},
		{"dtype", file(`{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}`, four), "unsupported dtype"},
		{"shape vs bytes", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, four), "needs 8 bytes"},
		{"negative shape", file(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, four), "negative"},
		{"overflowing shape", file(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, four), "too large"},
		{"offsets outside", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, four), "outside"},
		{"reversed offsets", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}`, four), "outside"},
		{"hole", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), "holes"},
		{"overlap", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, four), "holes"},
		{"bytes left over", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 8)), "cover 4 bytes"},
		{"unknown field", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, four), "unknown field"},
		{"metadata not strings", file(`{"__metadata__":{"a":1}}`, nil), "__metadata__"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.b)
			if err == nil {
				t.Fatal("decoded without error")
			}
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want ErrFormat mentioning %q", err, c.want)
			}
		})
	}
}

func TestWriteRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		ts   []Tensor
	}{
		{"duplicate", []Tensor{FromFloat32("a", []int{1}, []float32{1}), FromFloat32("a", []int{1}, []float32{1})}},
		{"reserved", []Tensor{FromFloat32("__metadata__", []int{1}, []float32{1})}},
		{"shape", []Tensor{FromFloat32("a", []int{2}, []float32{1})}},
		{"dtype", []Tensor{{Name: "a", DType: "F16", Shape: []int{1}, Data: []byte{0, 0}}}},
	} {
		if err := Write(&bytes.Buffer{}, c.ts, nil); err == nil {
			t.Errorf("%s: written without error", c.name)
		}
	}
}

func FuzzDecode(f *testing.F) {
	var buf bytes.Buffer
	_ = Write(&buf, []Tensor{FromFloat32("w", []int{2, 2}, []float32{1, 2, 3, 4}), FromInt64("i", []int{1}, []int64{9})}, map[string]string{"k": "v"})
	f.Add(buf.Bytes())
	f.Add(file(`{}`, nil))
	f.Add(file(`{"a":{"dtype":"F64","shape":[],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		// A file that decodes writes back to one that decodes to the same
		// tensors.
		var out bytes.Buffer
		if err := Write(&out, fl.Tensors, fl.Metadata); err != nil {
			t.Fatalf("rewrite: %v", err)
		}
		again, err := Decode(out.Bytes())
		if err != nil {
			t.Fatalf("decode of the rewrite: %v", err)
		}
		if len(again.Tensors) != len(fl.Tensors) {
			t.Fatalf("%d tensors after the rewrite, want %d", len(again.Tensors), len(fl.Tensors))
		}
		for _, tn := range fl.Tensors {
			g, ok := again.Get(tn.Name)
			if !ok || !bytes.Equal(g.Data, tn.Data) || g.DType != tn.DType || !slices.Equal(g.Shape, tn.Shape) {
				t.Fatalf("tensor %q changed in the rewrite", tn.Name)
			}
		}
	})
}

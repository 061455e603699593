package dataset

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// encodeIDX is WriteIDX into a byte slice; it fails the test on error.
func encodeIDX(t testing.TB, dims []int, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteIDX(&b, dims, data); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func TestReadIDXRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		dims []int
	}{
		{"labels", []int{10}},
		{"images", []int{3, 4, 5}},
		{"empty count", []int{0, 28, 28}},
		{"four dims", []int{2, 1, 3, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 1
			for _, d := range tc.dims {
				n *= d
			}
			raw := encodeIDX(t, tc.dims, seq(n))
			for _, in := range [][]byte{raw, gz(t, raw)} {
				x, err := ReadIDX(bytes.NewReader(in))
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(x.Dims, tc.dims) || !bytes.Equal(x.Data, seq(n)) {
					t.Fatalf("got dims %v, %d bytes; want %v, %d bytes", x.Dims, len(x.Data), tc.dims, n)
				}
			}
		})
	}
}

func TestReadIDXErrors(t *testing.T) {
	valid := encodeIDX(t, []int{60, 28, 28}, seq(60*28*28))
	header := func(b ...byte) []byte { return b }
	corruptGz := gz(t, valid)
	corruptGz[len(corruptGz)/2] ^= 0xff
	badCRC := gz(t, valid)
	badCRC[len(badCRC)-8] ^= 1 // the CRC-32 of the gzip trailer
	hugeDims := header(0, 0, 8, 3)
	hugeDims = binary.BigEndian.AppendUint32(hugeDims, 60000)
	hugeDims = binary.BigEndian.AppendUint32(hugeDims, 60000)
	hugeDims = binary.BigEndian.AppendUint32(hugeDims, 60000)
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "idx: truncated: 0 of the 4 bytes of the magic number"},
		{"short magic", header(0, 0), "truncated: 2 of the 4 bytes"},
		{"wrong magic", header(0x50, 0x4b, 3, 4, 0, 0), "bad magic number 50 4b 03 04"},
		{"float type", header(0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0), "element type 0x0d (float32) is not supported"},
		{"unknown type", header(0, 0, 0x42, 1), "element type 0x42 (unknown)"},
		{"no dims", header(0, 0, 8, 0), "0 dimensions"},
		{"truncated dims", header(0, 0, 8, 3, 0, 0, 0, 1, 0, 0), "header says 3 dimensions (12 bytes), file has 6"},
		{"zero inner dim", header(0, 0, 8, 2, 0, 0, 0, 5, 0, 0, 0, 0), "dimension 1 of 5×0 is 0"},
		{"too large", hugeDims, "more than the limit of 2147483648 bytes (dimensions so far 60000×60000)"},
		{"truncated data", valid[:len(valid)-100], "idx: truncated: header says 60×28×28 = 47040 bytes, file has 46940"},
		{"trailing bytes", append(slices.Clone(valid), 1, 2, 3), "3 trailing bytes after the 60×28×28 = 47040 bytes"},
		{"truncated gz", gz(t, valid)[:200], "idx: gzip content:"},
		{"corrupt gz", corruptGz, "idx: gzip"},
		{"gz checksum", badCRC, "checksum"},
		{"gz header only", []byte{0x1f, 0x8b}, "idx: gzip:"},
		{"gz trailing garbage", append(gz(t, valid), "junk"...), "idx: gzip"},
		{"gz of truncated", gz(t, valid[:1000]), "idx: gzip content: truncated: header says 60×28×28 = 47040 bytes, file has 984"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := ReadIDX(bytes.NewReader(tc.in))
			if err == nil {
				t.Fatalf("no error; got dims %v", x.Dims)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestReadIDXFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.gz")
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(good, gz(t, encodeIDX(t, []int{2, 2}, []byte{1, 2, 3, 4})), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte{0, 0, 8, 1, 0, 0, 0, 9, 1}, 0o644); err != nil {
		t.Fatal(err)
	}
	x, err := ReadIDXFile(good)
	if err != nil || !bytes.Equal(x.Data, []byte{1, 2, 3, 4}) {
		t.Fatalf("ReadIDXFile(good) = %v, %v", x, err)
	}
	for _, p := range []string{bad, filepath.Join(dir, "missing")} {
		if _, err := ReadIDXFile(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("ReadIDXFile(%s): error %v does not name the path", p, err)
		}
	}
}

func TestWriteIDXRefuses(t *testing.T) {
	for _, tc := range []struct {
		dims []int
		n    int
	}{
		{nil, 0}, {[]int{2, 0}, 0}, {[]int{-1}, 0}, {[]int{3}, 2}, {[]int{1 << 16, 1 << 16}, 0},
	} {
		if err := WriteIDX(&bytes.Buffer{}, tc.dims, make([]byte, tc.n)); err == nil {
			t.Errorf("WriteIDX(%v, %d bytes): no error", tc.dims, tc.n)
		}
	}
}

// FuzzReadIDX feeds arbitrary bytes, plain or gzip, to ReadIDX: it must not
// panic, and whatever it accepts must be consistent and survive a round
// trip through WriteIDX.
func FuzzReadIDX(f *testing.F) {
	f.Add(encodeIDX(f, []int{3}, []byte{1, 2, 3}))
	f.Add(encodeIDX(f, []int{2, 2, 2}, seq(8)))
	f.Add(encodeIDX(f, []int{0, 5}, nil))
	f.Add(gz(f, encodeIDX(f, []int{2, 3}, seq(6))))
	f.Add([]byte{0, 0, 8, 1, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		x, err := ReadIDX(bytes.NewReader(in))
		if err != nil {
			if x != nil {
				t.Fatal("non-nil IDX with an error")
			}
			return
		}
		n := 1
		for i, d := range x.Dims {
			if d < 0 || (d == 0 && i > 0) {
				t.Fatalf("accepted dims %v", x.Dims)
			}
			n *= d
		}
		if len(x.Data) != n || n > MaxIDXBytes {
			t.Fatalf("dims %v but %d bytes", x.Dims, len(x.Data))
		}
		var b bytes.Buffer
		if err := WriteIDX(&b, x.Dims, x.Data); err != nil {
			t.Fatalf("WriteIDX of an accepted file: %v", err)
		}
		y, err := ReadIDX(&b)
		if err != nil || !slices.Equal(x.Dims, y.Dims) || !bytes.Equal(x.Data, y.Data) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

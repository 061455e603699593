package tfrecord

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"testing"
)

// crc32cBitwise is CRC-32C computed bit by bit from its definition: the
// reflected Castagnoli polynomial 0x82f63b78, initial value and final xor
// 0xffffffff. It is independent of hash/crc32's tables.
func crc32cBitwise(b []byte) uint32 {
	c := ^uint32(0)
	for _, x := range b {
		c ^= uint32(x)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0x82f63b78
			} else {
				c >>= 1
			}
		}
	}
	return ^c
}

// maskBitwise is the TFRecord mask written out from the format's
// specification.
func maskBitwise(c uint32) uint32 { return ((c >> 15) | (c << 17)) + 0xa282ead8 }

func TestCRC32C(t *testing.T) {
	if got := crc32cBitwise([]byte("123456789")); got != 0xe3069283 {
		t.Fatalf("bitwise CRC-32C check value %08x, want e3069283", got)
	}
	for _, b := range [][]byte{nil, []byte("123456789"), bytes.Repeat([]byte{0xa5}, 1000)} {
		if got, want := MaskedCRC(b), maskBitwise(crc32cBitwise(b)); got != want {
			t.Errorf("MaskedCRC(%q…) = %08x, want %08x", b[:min(len(b), 9)], got, want)
		}
	}
}

// TestFixture checks one record byte by byte against the format: the data
// "hello" is framed as 05 00 00 00 00 00 00 00, the masked CRC of those 8
// bytes, the 5 bytes, and the masked CRC of the 5 bytes, all little-endian.
func TestFixture(t *testing.T) {
	data := []byte("hello")
	length := []byte{5, 0, 0, 0, 0, 0, 0, 0}
	var want []byte
	want = append(want, length...)
	want = binary.LittleEndian.AppendUint32(want, maskBitwise(crc32cBitwise(length)))
	want = append(want, data...)
	want = binary.LittleEndian.AppendUint32(want, maskBitwise(crc32cBitwise(data)))
	if len(want) != 8+4+5+4 {
		t.Fatalf("fixture of %d bytes", len(want))
	}

	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("written\n% x\nwant\n% x", buf.Bytes(), want)
	}
	if w.Offset() != int64(len(want)) {
		t.Errorf("Offset %d, want %d", w.Offset(), len(want))
	}
	got, err := ReadAt(bytes.NewReader(want), 0, nil)
	if err != nil || string(got) != "hello" {
		t.Fatalf("ReadAt: %q, %v", got, err)
	}
}

func TestReadWrite(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	// Records below and above a megabyte take the two read paths.
	records := [][]byte{[]byte("a"), {}, bytes.Repeat([]byte("xyz"), 50000), bytes.Repeat([]byte("big"), 700000), []byte("last")}
	var offs []int64
	for _, r := range records {
		offs = append(offs, w.Offset())
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(bytes.NewReader(buf.Bytes()))
	for i, want := range records {
		got, rec, err := r.Next(nil)
		if err != nil || !bytes.Equal(got, want) || rec.Offset != offs[i] || rec.Len != int64(len(want)) {
			t.Fatalf("record %d: %d bytes at %d, %v", i, len(got), rec.Offset, err)
		}
		at, err := ReadAt(bytes.NewReader(buf.Bytes()), offs[i], nil)
		if err != nil || !bytes.Equal(at, want) {
			t.Fatalf("ReadAt record %d: %v", i, err)
		}
	}
	if _, _, err := r.Next(nil); err != io.EOF {
		t.Fatalf("after the last record: %v, want EOF", err)
	}
	// The big record cut short.
	cut := buf.Bytes()[:offs[3]+FrameLen+1000]
	if _, err := ReadAt(bytes.NewReader(cut), offs[3], nil); !errors.Is(err, ErrTruncated) {
		t.Fatalf("ReadAt of a cut big record: %v", err)
	}
	r = NewReader(bytes.NewReader(cut))
	for range 3 {
		r.Next(nil)
	}
	if _, _, err := r.Next(nil); !errors.Is(err, ErrTruncated) {
		t.Fatalf("Next of a cut big record: %v", err)
	}
}

func TestCorruption(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, s := range []string{"first", "second", "third"} {
		if err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	good := buf.Bytes()

	// A flipped data byte of the second record: the reader reports it and
	// goes on with the third.
	b := bytes.Clone(good)
	b[21+12] ^= 1 // first record is 21 bytes; data of the second starts 12 later
	r := NewReader(bytes.NewReader(b))
	if _, _, err := r.Next(nil); err != nil {
		t.Fatal(err)
	}
	if _, rec, err := r.Next(nil); !errors.Is(err, ErrDataCRC) || rec.Offset != 21 {
		t.Fatalf("corrupt data: %v at %d, want ErrCRC at 21", err, rec.Offset)
	}
	if got, _, err := r.Next(nil); err != nil || string(got) != "third" {
		t.Fatalf("after a corrupt record: %q %v", got, err)
	}
	if _, err := ReadAt(bytes.NewReader(b), 21, nil); !errors.Is(err, ErrCRC) {
		t.Fatalf("ReadAt of corrupt data: %v", err)
	}

	// A flipped length byte: the header's CRC fails.
	b = bytes.Clone(good)
	b[0] ^= 1
	if _, _, err := NewReader(bytes.NewReader(b)).Next(nil); !errors.Is(err, ErrCRC) || errors.Is(err, ErrDataCRC) {
		t.Fatalf("corrupt length: %v", err)
	}

	// Cut at every byte inside the third record (at 43): the first two are read,
	// then ErrTruncated.
	for cut := 43 + 1; cut < len(good); cut++ {
		r := NewReader(bytes.NewReader(good[:cut]))
		r.Next(nil)
		r.Next(nil)
		if _, _, err := r.Next(nil); !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d: %v, want ErrTruncated", cut, err)
		}
		if _, err := ReadAt(bytes.NewReader(good[:cut]), 43, nil); !errors.Is(err, ErrTruncated) {
			t.Fatalf("ReadAt cut at %d: %v, want ErrTruncated", cut, err)
		}
	}
}

func FuzzReader(f *testing.F) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.Write([]byte("hello"))
	w.Write(nil)
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:10])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bytes.NewReader(b))
		var end int64
		for range 1000 {
			data, rec, err := r.Next(nil)
			if err == io.EOF {
				if end != int64(len(b)) {
					t.Fatalf("EOF at %d of %d bytes", end, len(b))
				}
				return
			}
			if err != nil && !errors.Is(err, ErrDataCRC) {
				return
			}
			if err == nil {
				if int64(len(data)) != rec.Len || rec.Offset+FrameLen+rec.Len > int64(len(b)) {
					t.Fatalf("record %+v of %d bytes in %d", rec, len(data), len(b))
				}
				again, err := ReadAt(bytes.NewReader(b), rec.Offset, nil)
				if err != nil || !bytes.Equal(again, data) {
					t.Fatalf("ReadAt disagrees with Next at %d: %v", rec.Offset, err)
				}
			}
			end = rec.Offset + FrameLen + rec.Len
		}
	})
}

func TestExampleRoundTrip(t *testing.T) {
	ex := Example{
		"image":   BytesFeature([]byte{0x89, 'P', 'N', 'G'}, nil, []byte("second")),
		"action":  FloatFeature(1, -2.5, float32(math.Inf(1)), 0),
		"step":    Int64Feature(0, 1, -1, math.MaxInt64, math.MinInt64),
		"empty":   {Kind: KindFloat},
		"nothing": {},
	}
	got, err := DecodeExample(ex.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ex) {
		t.Fatalf("%d features, want %d", len(got), len(ex))
	}
	for k, want := range ex {
		g := got[k]
		if g == nil || g.Kind != want.Kind || g.Len() != want.Len() {
			t.Fatalf("feature %q: %+v, want %+v", k, g, want)
		}
		for i := range want.Bytes {
			if !bytes.Equal(g.Bytes[i], want.Bytes[i]) {
				t.Errorf("%q bytes %d", k, i)
			}
		}
		for i := range want.Floats {
			if g.Floats[i] != want.Floats[i] {
				t.Errorf("%q float %d", k, i)
			}
		}
		for i := range want.Ints {
			if g.Ints[i] != want.Ints[i] {
				t.Errorf("%q int %d", k, i)
			}
		}
	}
	if !bytes.Equal(got.Marshal(), ex.Marshal()) {
		t.Error("Marshal of the decoded example differs")
	}
}

// TestExampleWire decodes hand-written wire bytes: unpacked numbers, a
// field unknown to tf.train.Example, and a map entry written value first.
func TestExampleWire(t *testing.T) {
	lenField := func(num int, p []byte) []byte { return appendBytes(nil, num, p) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	// FloatList with two unpacked floats (tag 0x0d = field 1, fixed32).
	floats := cat([]byte{0x0d}, binary.LittleEndian.AppendUint32(nil, math.Float32bits(1.5)),
		[]byte{0x0d}, binary.LittleEndian.AppendUint32(nil, math.Float32bits(-3)))
	// Int64List with unpacked varints 7 and 300 (tag 0x08).
	ints := cat([]byte{0x08, 7, 0x08, 0xac, 0x02})
	entry := func(key string, feat []byte) []byte {
		return lenField(1, cat(lenField(2, feat), lenField(1, []byte(key)))) // value before key
	}
	features := cat(
		entry("f", lenField(2, floats)),
		entry("i", lenField(3, ints)),
		[]byte{0x10, 0x01}, // unknown varint field 2 in Features
	)
	ex, err := DecodeExample(cat(lenField(1, features), []byte{0x18, 0x05}))
	if err != nil {
		t.Fatal(err)
	}
	if f := ex["f"]; f == nil || f.Kind != KindFloat || len(f.Floats) != 2 || f.Floats[0] != 1.5 || f.Floats[1] != -3 {
		t.Errorf("unpacked floats: %+v", ex["f"])
	}
	if f := ex["i"]; f == nil || f.Kind != KindInt64 || len(f.Ints) != 2 || f.Ints[0] != 7 || f.Ints[1] != 300 {
		t.Errorf("unpacked ints: %+v", ex["i"])
	}

	for name, b := range map[string][]byte{
		"short length":    {0x0a, 0x05, 0x0a},
		"bad varint":      {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"group wire type": {0x0b},
		"field zero":      {0x02, 0x00},
		"odd packed":      lenField(1, entry("x", lenField(2, lenField(1, []byte{1, 2, 3})))),
	} {
		if _, err := DecodeExample(b); !errors.Is(err, ErrProto) {
			t.Errorf("%s: %v, want ErrProto", name, err)
		}
	}
}

func FuzzDecodeExample(f *testing.F) {
	f.Add(Example{"a": BytesFeature([]byte("x")), "b": FloatFeature(1, 2), "c": Int64Feature(-1)}.Marshal())
	f.Add([]byte{0x0a, 0x00})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ex, err := DecodeExample(b)
		if err != nil {
			if !errors.Is(err, ErrProto) {
				t.Fatalf("error %v does not wrap ErrProto", err)
			}
			return
		}
		// What decodes re-encodes to bytes that decode to the same.
		again, err := DecodeExample(ex.Marshal())
		if err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		for k, f := range ex {
			g := again[k]
			if g == nil || g.Len() != f.Len() {
				t.Fatalf("feature %q changed: %+v → %+v", k, f, g)
			}
		}
	})
}

package tfrecord

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Feature is one value of a tf.train.Example: exactly one of the three
// lists is set (Kind says which).
type Feature struct {
	Kind   Kind
	Bytes  [][]byte
	Floats []float32
	Ints   []int64
}

// Kind names the list a Feature holds.
type Kind uint8

// The kinds of a Feature; KindNone is a feature with no list set.
const (
	KindNone Kind = iota
	KindBytes
	KindFloat
	KindInt64
)

func (k Kind) String() string {
	return [...]string{"none", "bytes_list", "float_list", "int64_list"}[min(int(k), 3)]
}

// Len is the number of values of f.
func (f *Feature) Len() int { return len(f.Bytes) + len(f.Floats) + len(f.Ints) }

// Example is a decoded tf.train.Example: feature name to feature.
type Example map[string]*Feature

// ErrProto wraps every error of the wire decoder.
var ErrProto = errors.New("tfrecord: bad tf.train.Example")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProto, fmt.Sprintf(format, args...))
}

// Protobuf wire types.
const (
	wireVarint = 0
	wire64     = 1
	wireBytes  = 2
	wire32     = 5
)

// decoder walks the fields of one message.
type decoder struct{ b []byte }

func (d *decoder) varint() (uint64, error) {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		return 0, protoErr("bad varint")
	}
	d.b = d.b[n:]
	return v, nil
}

// next returns the next field's number and wire type, and for
// length-delimited fields the payload; other scalar payloads are returned
// in val.
func (d *decoder) next() (num int, typ int, payload []byte, val uint64, err error) {
	key, err := d.varint()
	if err != nil {
		return 0, 0, nil, 0, err
	}
	num, typ = int(key>>3), int(key&7)
	if num == 0 {
		return 0, 0, nil, 0, protoErr("field number 0")
	}
	switch typ {
	case wireVarint:
		val, err = d.varint()
	case wire64:
		if len(d.b) < 8 {
			return 0, 0, nil, 0, protoErr("short fixed64")
		}
		val, d.b = binary.LittleEndian.Uint64(d.b), d.b[8:]
	case wire32:
		if len(d.b) < 4 {
			return 0, 0, nil, 0, protoErr("short fixed32")
		}
		val, d.b = uint64(binary.LittleEndian.Uint32(d.b)), d.b[4:]
	case wireBytes:
		var l uint64
		if l, err = d.varint(); err != nil {
			return
		}
		if l > uint64(len(d.b)) {
			return 0, 0, nil, 0, protoErr("length %d beyond the %d bytes left", l, len(d.b))
		}
		payload, d.b = d.b[:l], d.b[l:]
	default:
		return 0, 0, nil, 0, protoErr("wire type %d (groups are not used by tf.train.Example)", typ)
	}
	return
}

// DecodeExample decodes a serialized tf.train.Example:
//
//	Example  { Features features = 1; }
//	Features { map<string, Feature> feature = 1; }   // entries {key = 1, value = 2}
//	Feature  { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
//	BytesList { repeated bytes value = 1; }
//	FloatList { repeated float value = 1 [packed]; }
//	Int64List { repeated int64 value = 1 [packed]; }
//
// Packed and unpacked encodings of the numbers are both accepted, unknown
// fields are skipped, and a later value of a field replaces an earlier one
// as protobuf merging does. The bytes of a BytesList alias b.
func DecodeExample(b []byte) (Example, error) {
	ex := Example{}
	d := decoder{b}
	for len(d.b) > 0 {
		num, typ, p, _, err := d.next()
		if err != nil {
			return nil, err
		}
		if num != 1 || typ != wireBytes {
			continue
		}
		if err := decodeFeatures(p, ex); err != nil {
			return nil, err
		}
	}
	return ex, nil
}

func decodeFeatures(b []byte, ex Example) error {
	d := decoder{b}
	for len(d.b) > 0 {
		num, typ, p, _, err := d.next()
		if err != nil {
			return err
		}
		if num != 1 || typ != wireBytes {
			continue
		}
		// A map entry.
		var (
			key string
			f   = &Feature{}
		)
		e := decoder{p}
		for len(e.b) > 0 {
			num, typ, q, _, err := e.next()
			if err != nil {
				return err
			}
			switch {
			case num == 1 && typ == wireBytes:
				key = string(q)
			case num == 2 && typ == wireBytes:
				if f, err = decodeFeature(q); err != nil {
					return fmt.Errorf("feature %q: %w", key, err)
				}
			}
		}
		ex[key] = f
	}
	return nil
}

func decodeFeature(b []byte) (*Feature, error) {
	f := &Feature{}
	d := decoder{b}
	for len(d.b) > 0 {
		num, typ, p, _, err := d.next()
		if err != nil {
			return nil, err
		}
		if typ != wireBytes || num < 1 || num > 3 {
			continue
		}
		*f = Feature{Kind: Kind(num)}
		l := decoder{p}
		for len(l.b) > 0 {
			vn, vt, q, val, err := l.next()
			if err != nil {
				return nil, err
			}
			if vn != 1 {
				continue
			}
			switch {
			case num == 1 && vt == wireBytes:
				f.Bytes = append(f.Bytes, q)
			case num == 2 && vt == wire32:
				f.Floats = append(f.Floats, math.Float32frombits(uint32(val)))
			case num == 2 && vt == wireBytes: // packed floats
				if len(q)%4 != 0 {
					return nil, protoErr("packed floats of %d bytes", len(q))
				}
				for i := 0; i < len(q); i += 4 {
					f.Floats = append(f.Floats, math.Float32frombits(binary.LittleEndian.Uint32(q[i:])))
				}
			case num == 3 && vt == wireVarint:
				f.Ints = append(f.Ints, int64(val))
			case num == 3 && vt == wireBytes: // packed varints
				v := decoder{q}
				for len(v.b) > 0 {
					x, err := v.varint()
					if err != nil {
						return nil, err
					}
					f.Ints = append(f.Ints, int64(x))
				}
			default:
				return nil, protoErr("%s value of wire type %d", Kind(num), vt)
			}
		}
	}
	return f, nil
}

func appendTag(b []byte, num, typ int) []byte { return binary.AppendUvarint(b, uint64(num<<3|typ)) }

func appendBytes(b []byte, num int, p []byte) []byte {
	b = appendTag(b, num, wireBytes)
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// Marshal encodes ex as a tf.train.Example, features in sorted key order
// and numbers packed, so that equal examples give equal bytes.
func (ex Example) Marshal() []byte {
	keys := make([]string, 0, len(ex))
	for k := range ex {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var feats, entry, feat, list []byte
	for _, k := range keys {
		f := ex[k]
		list = list[:0]
		switch f.Kind {
		case KindBytes:
			for _, v := range f.Bytes {
				list = appendBytes(list, 1, v)
			}
		case KindFloat:
			var packed []byte
			for _, v := range f.Floats {
				packed = binary.LittleEndian.AppendUint32(packed, math.Float32bits(v))
			}
			list = appendBytes(list, 1, packed)
		case KindInt64:
			var packed []byte
			for _, v := range f.Ints {
				packed = binary.AppendUvarint(packed, uint64(v))
			}
			list = appendBytes(list, 1, packed)
		}
		feat = feat[:0]
		if f.Kind != KindNone {
			feat = appendBytes(feat, int(f.Kind), list)
		}
		entry = appendBytes(entry[:0], 1, []byte(k))
		entry = appendBytes(entry, 2, feat)
		feats = appendBytes(feats, 1, entry)
	}
	return appendBytes(nil, 1, feats)
}

// BytesFeature, FloatFeature and Int64Feature build features.
func BytesFeature(v ...[]byte) *Feature { return &Feature{Kind: KindBytes, Bytes: v} }

// FloatFeature is a float_list feature.
func FloatFeature(v ...float32) *Feature { return &Feature{Kind: KindFloat, Floats: v} }

// Int64Feature is an int64_list feature.
func Int64Feature(v ...int64) *Feature { return &Feature{Kind: KindInt64, Ints: v} }

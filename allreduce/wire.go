package allreduce

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// hostLittleEndian reports whether the host stores integers little end
// first. The wire is little endian and buffers are sent as they lie in
// memory, so NewRingWithTransport refuses big-endian hosts.
var hostLittleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// bfloat16 keeps the sign, the 8 exponent bits and the top 7 fraction bits
// of a float32: precision p = 8 significant bits, so rounding to nearest
// has unit roundoff u = 2^-p = 2^-8 (relative error at most u for finite
// values inside the float32 range).
const bf16UnitRoundoff = 1.0 / 256

// BFloat16Bound returns the worst-case absolute error of an all-reduce of k
// ranks with the bfloat16 wire, for one element whose contributions have
// absolute sum absSum = sum_k |x_k|.
//
// Along the ring the partial sum p_j = x_1 + ... + x_j is rounded to
// bfloat16 each time it is sent (k-1 times in the reduce-scatter) and the
// owner rounds the final sum once more before the all-gather so that every
// rank holds the same value; each float32 addition adds a rounding of at
// most u32 = 2^-24. With e = u + u32 + u*u32 per hop, the standard bound for
// recursive summation (Higham, Accuracy and Stability, eq. 4.4) gives
//
//	|s_hat - s| <= gamma_k * sum_k |x_k|,   gamma_k = k*e / (1 - k*e).
func BFloat16Bound(k int, absSum float64) float64 {
	const u32 = 1.0 / (1 << 24)
	e := bf16UnitRoundoff + u32 + bf16UnitRoundoff*u32
	ke := float64(k) * e
	return ke / (1 - ke) * absSum
}

// toBF16 rounds f to the nearest bfloat16, ties to even; NaN stays NaN.
func toBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

func fromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// roundBF16 rounds x in place to bfloat16 precision.
func roundBF16(x []float32) {
	var tmp [256]uint16
	view := unsafe.Slice((*byte)(unsafe.Pointer(&tmp[0])), 2*len(tmp))
	for len(x) > 0 {
		n := min(len(x), len(tmp))
		encodeBF16(view, x[:n])
		decodeBF16(x[:n], tmp[:n])
		x = x[n:]
	}
}

// addF64Go implements dst += src.
func addF64Go(dst, src []float64) {
	src = src[:len(dst)]
	i := 0
	for ; i+4 <= len(dst); i += 4 {
		d, s := dst[i:i+4:i+4], src[i:i+4:i+4]
		d[0] += s[0]
		d[1] += s[1]
		d[2] += s[2]
		d[3] += s[3]
	}
	for ; i < len(dst); i++ {
		dst[i] += src[i]
	}
}

// Byte views of numeric slices (the host is little endian, see
// hostLittleEndian).
func f32Bytes(x []float32) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(x))), 4*len(x))
}

func f64Bytes(x []float64) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(x))), 8*len(x))
}

// bytesF32 views b (len a multiple of 4, 4-byte aligned) as float32s.
func bytesF32(b []byte) []float32 {
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/4)
}

func bytesF64(b []byte) []float64 {
	return unsafe.Slice((*float64)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/8)
}

func bytesU16(b []byte) []uint16 {
	return unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/2)
}

// compressor wraps the optional payload compression of a ring.
type compressor struct {
	kind string // "s2" or "zstd"
	zenc *zstd.Encoder
	zdec *zstd.Decoder
}

func newCompressor(kind string) (*compressor, error) {
	c := &compressor{kind: kind}
	if kind == "zstd" {
		var err error
		c.zenc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true), zstd.WithEncoderCRC(false))
		if err != nil {
			return nil, fmt.Errorf("allreduce: zstd encoder: %w", err)
		}
		c.zdec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(MaxFrameBytes), zstd.WithDecoderLowmem(true))
		if err != nil {
			c.zenc.Close()
			return nil, fmt.Errorf("allreduce: zstd decoder: %w", err)
		}
	}
	return c, nil
}

// maxLen is the largest compressed size of n bytes.
func (c *compressor) maxLen(n int) int {
	if c.kind == "s2" {
		return s2.MaxEncodedLen(n)
	}
	return n + n/128 + 1024 // zstd worst case (ZSTD_COMPRESSBOUND) with margin
}

// compress returns src compressed into dst's storage (dst may grow).
func (c *compressor) compress(dst, src []byte) []byte {
	if c.kind == "s2" {
		if cap(dst) < s2.MaxEncodedLen(len(src)) {
			dst = make([]byte, s2.MaxEncodedLen(len(src)))
		}
		return s2.Encode(dst[:cap(dst)], src)
	}
	return c.zenc.EncodeAll(src, dst[:0])
}

// decompress decodes src into dst, which must come out exactly want bytes
// long; anything else (including a bomb) is an error.
func (c *compressor) decompress(dst, src []byte, want int) ([]byte, error) {
	if c.kind == "s2" {
		n, err := s2.DecodedLen(src)
		if err != nil {
			return nil, fmt.Errorf("%w: s2: %v", ErrMismatch, err)
		}
		if n != want || n > cap(dst) {
			return nil, fmt.Errorf("%w: s2 payload decodes to %d bytes, want %d", ErrMismatch, n, want)
		}
		out, err := s2.Decode(dst[:cap(dst)], src)
		if err != nil {
			return nil, fmt.Errorf("%w: s2: %v", ErrMismatch, err)
		}
		return out, nil
	}
	out, err := c.zdec.DecodeAll(src, dst[:0])
	if err != nil {
		return nil, fmt.Errorf("%w: zstd: %v", ErrMismatch, err)
	}
	if len(out) != want {
		return nil, fmt.Errorf("%w: zstd payload decodes to %d bytes, want %d", ErrMismatch, len(out), want)
	}
	return out, nil
}

func (c *compressor) close() {
	if c == nil {
		return
	}
	if c.zenc != nil {
		c.zenc.Close()
	}
	if c.zdec != nil {
		c.zdec.Close()
	}
}

package checkpoint

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Float32Bytes encodes x as IEEE 754 binary32 values, little-endian, 4 bytes
// each, whatever the byte order of the machine.
func Float32Bytes(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// BytesFloat32 decodes the output of Float32Bytes. It fails when len(b) is
// not a multiple of 4.
func BytesFloat32(b []byte) ([]float32, error) {
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("checkpoint: %d bytes is not a whole number of float32 values", len(b))
	}
	x := make([]float32, len(b)/4)
	for i := range x {
		x[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return x, nil
}

// Float64Bytes encodes x as IEEE 754 binary64 values, little-endian, 8 bytes
// each, whatever the byte order of the machine.
func Float64Bytes(x []float64) []byte {
	b := make([]byte, 8*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v))
	}
	return b
}

// BytesFloat64 decodes the output of Float64Bytes. It fails when len(b) is
// not a multiple of 8.
func BytesFloat64(b []byte) ([]float64, error) {
	if len(b)%8 != 0 {
		return nil, fmt.Errorf("checkpoint: %d bytes is not a whole number of float64 values", len(b))
	}
	x := make([]float64, len(b)/8)
	for i := range x {
		x[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return x, nil
}

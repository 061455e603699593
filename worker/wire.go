package worker

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/infonce/infonce/checkpoint"
)

// maxStateBytes bounds a state received by broadcast.
const maxStateBytes = 1 << 32

// encodeState packs a Snapshot into one buffer for a broadcast:
//
//	u32 manifest length, manifest JSON, u32 blob count,
//	then per blob: u16 name length, name, u64 data length, data
//
// all little-endian.
func encodeState(m checkpoint.Manifest, blobs []checkpoint.Blob) ([]byte, error) {
	mj, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode state manifest: %w", err)
	}
	n := 4 + len(mj) + 4
	for _, b := range blobs {
		n += 2 + len(b.Name) + 8 + len(b.Data)
	}
	buf := make([]byte, 0, n)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(mj)))
	buf = append(buf, mj...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(blobs)))
	for _, b := range blobs {
		buf = binary.LittleEndian.AppendUint16(buf, uint16(len(b.Name)))
		buf = append(buf, b.Name...)
		buf = binary.LittleEndian.AppendUint64(buf, uint64(len(b.Data)))
		buf = append(buf, b.Data...)
	}
	return buf, nil
}

var errStateTruncated = errors.New("state is truncated")

// decodeState is the inverse of encodeState. The blobs alias buf.
func decodeState(buf []byte) (checkpoint.Manifest, map[string][]byte, error) {
	var m checkpoint.Manifest
	take := func(n uint64) ([]byte, error) {
		if n > uint64(len(buf)) {
			return nil, errStateTruncated
		}
		b := buf[:n]
		buf = buf[n:]
		return b, nil
	}
	h, err := take(4)
	if err != nil {
		return m, nil, err
	}
	mj, err := take(uint64(binary.LittleEndian.Uint32(h)))
	if err != nil {
		return m, nil, err
	}
	if err := json.Unmarshal(mj, &m); err != nil {
		return m, nil, fmt.Errorf("state manifest: %w", err)
	}
	if h, err = take(4); err != nil {
		return m, nil, err
	}
	count := binary.LittleEndian.Uint32(h)
	if count > 1024 {
		return m, nil, fmt.Errorf("state has %d blobs, at most 1024 are allowed", count)
	}
	blobs := make(map[string][]byte, count)
	for range count {
		if h, err = take(2); err != nil {
			return m, nil, err
		}
		name, err := take(uint64(binary.LittleEndian.Uint16(h)))
		if err != nil {
			return m, nil, err
		}
		if err := checkpoint.ValidBlobName(string(name)); err != nil {
			return m, nil, fmt.Errorf("state blob: %w", err)
		}
		if h, err = take(8); err != nil {
			return m, nil, err
		}
		data, err := take(binary.LittleEndian.Uint64(h))
		if err != nil {
			return m, nil, err
		}
		blobs[string(name)] = data
	}
	if len(buf) != 0 {
		return m, nil, fmt.Errorf("state has %d trailing bytes", len(buf))
	}
	return m, blobs, nil
}

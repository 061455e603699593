package grpc

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
)

func FuzzRawCodecUnmarshal(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 'x'}, 3)
	f.Add([]byte{1, 2}, 1)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		var bs mem.BufferSlice
		if split > 0 && split < len(b) {
			bs = mem.BufferSlice{mem.SliceBuffer(b[:split]), mem.SliceBuffer(b[split:])}
		} else {
			bs = mem.BufferSlice{mem.SliceBuffer(b)}
		}
		var m inMsg
		err := rawCodec{}.Unmarshal(bs, &m)
		if len(b) < 8 {
			if err == nil {
				t.Fatal("short message accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := m.data.Materialize(); !bytes.Equal(got, b[8:]) {
			t.Fatalf("payload %q, want %q", got, b[8:])
		}
		m.data.Free()
	})
}

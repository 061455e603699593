package link

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/infonce/infonce/allreduce"
)

func TestHandshakeRoundTrip(t *testing.T) {
	tests := []Handshake{
		{Version: 1, Kind: HelloKind, Generation: 3, From: 1, To: 2, Size: 3, JobID: "job"},
		{Version: 1, Kind: RefuseKind, Code: CodeJob, JobID: strings.Repeat("j", allreduce.MaxJobID), Reason: strings.Repeat("r", MaxReason)},
		{Version: 65535, Kind: AcceptKind, Generation: 1<<64 - 1},
	}
	for _, h := range tests {
		got, err := DecodeHandshake(h.Encode())
		if err != nil || got != h {
			t.Fatalf("round trip of %+v: %+v, %v", h, got, err)
		}
	}
	bad := [][]byte{nil, []byte("IRNG"), append([]byte("XXXX"), make([]byte, 40)...)}
	h := tests[0].Encode()
	bad = append(bad, h[:len(h)-1], append(h, 0), make([]byte, MaxHandshake+1))
	for _, b := range bad {
		if _, err := DecodeHandshake(b); !errors.Is(err, ErrMalformed) {
			t.Fatalf("decode of %q: %v, want malformed", b, err)
		}
	}
}

func FuzzDecodeHandshake(f *testing.F) {
	f.Add((&Handshake{Version: 1, Kind: HelloKind, Generation: 9, From: 1, To: 2, Size: 3, JobID: "j"}).Encode())
	f.Add((&Handshake{Version: 1, Kind: RefuseKind, Code: 2, Reason: "no"}).Encode())
	f.Add([]byte("IRNG"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHandshake(b)
		if err != nil {
			return
		}
		if !bytes.Equal(h.Encode(), b) {
			t.Fatalf("decode/encode not the identity for %q", b)
		}
	})
}

func FuzzFrameReader(f *testing.F) {
	var hdr [FrameHeader]byte
	PutFrameHeader(&hdr, 7, 3)
	f.Add(append(hdr[:], 'a', 'b', 'c'), 16)
	PutFrameHeader(&hdr, 1, 1<<31)
	f.Add(hdr[:], 8)
	f.Fuzz(func(t *testing.T, b []byte, max int) {
		if max < 0 || max > 1<<16 {
			return
		}
		fr := FrameReader{R: bytes.NewReader(b)}
		dst := make([]byte, max)
		total := 0
		for {
			_, n, err := fr.Next(dst, max)
			if err != nil {
				if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if n > max {
				t.Fatalf("frame of %d bytes beyond max %d", n, max)
			}
			total += FrameHeader + n
			if total > len(b) {
				t.Fatalf("read %d bytes from %d", total, len(b))
			}
		}
	})
}

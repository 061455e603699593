package worker

import (
	"bytes"
	"testing"

	"github.com/infonce/infonce/checkpoint"
)

func TestStateRoundTrip(t *testing.T) {
	m := checkpoint.Manifest{Step: 7, SamplerCursor: 7, Extra: map[string]string{"a": "b"}}
	blobs := []checkpoint.Blob{{Name: "params", Data: []byte{1, 2, 3}}, {Name: "optim_m", Data: nil}}
	buf, err := encodeState(m, blobs)
	if err != nil {
		t.Fatal(err)
	}
	got, b, err := decodeState(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got.Step != 7 || got.Extra["a"] != "b" || !bytes.Equal(b["params"], []byte{1, 2, 3}) || len(b) != 2 {
		t.Fatalf("round trip: %+v %v", got, b)
	}
	for cut := 0; cut < len(buf); cut++ {
		if _, _, err := decodeState(buf[:cut]); err == nil {
			t.Fatalf("a state cut at %d of %d bytes was accepted", cut, len(buf))
		}
	}
}

func FuzzDecodeState(f *testing.F) {
	buf, _ := encodeState(checkpoint.Manifest{Step: 1}, []checkpoint.Blob{{Name: "params", Data: []byte{9}}})
	f.Add(buf)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, blobs, err := decodeState(b)
		if err != nil {
			return
		}
		again, err := encodeState(m, nil)
		if err != nil || len(again) == 0 {
			t.Fatalf("decoded state does not encode again: %v", err)
		}
		for name := range blobs {
			if checkpoint.ValidBlobName(name) != nil {
				t.Fatalf("invalid blob name %q accepted", name)
			}
		}
	})
}

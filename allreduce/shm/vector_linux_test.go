package shm

import (
	"encoding/binary"
	"path/filepath"
	"testing"
)

// FuzzVecOffer feeds arbitrary offer records (bytes from a peer) to the
// decoder and to openVec: nothing but a vector of its own making opens.
func FuzzVecOffer(f *testing.F) {
	var rec [vecOfferBytes]byte
	name := filepath.Join(shmDir, vecPrefix+"0123456789abcdef")
	rec[0] = byte(len(name))
	copy(rec[1:], name)
	binary.LittleEndian.PutUint64(rec[vecOfferBytes-24:], 64)
	f.Add(rec[:])
	f.Add(make([]byte, vecOfferBytes))
	f.Add([]byte{3, '/', 'a', 'b'})
	rec[0] = 0xff
	f.Add(rec[:])
	f.Fuzz(func(t *testing.T, b []byte) {
		name, n, nonce, ok := parseVecOffer(b)
		if !ok {
			return
		}
		if n <= 0 || len(name) == 0 {
			t.Fatalf("accepted n=%d name %q", n, name)
		}
		if v, err := openVec(name, nonce, n); err == nil {
			v.unmap()
			t.Fatalf("opened %q from a fuzzed offer", name)
		}
	})
}

package grpc

import (
	"math/bits"
	"sync"
)

// dirtyPool is the gRPC buffer pool of the data plane: power-of-two size
// classes from 4 KiB to 64 MiB, handed out without clearing (every byte
// of a data-plane buffer is written before it is read), which saves
// clearing each received megabyte once more.
type dirtyPool struct {
	classes [15]sync.Pool // 2^12 .. 2^26 bytes
}

const dirtyMinShift = 12

var dataPool = &dirtyPool{}

func (p *dirtyPool) class(n int) int {
	if n <= 1<<dirtyMinShift {
		return 0
	}
	return bits.Len(uint(n-1)) - dirtyMinShift
}

func (p *dirtyPool) Get(n int) *[]byte {
	c := p.class(n)
	if c >= len(p.classes) {
		b := make([]byte, n)
		return &b
	}
	if v, ok := p.classes[c].Get().(*[]byte); ok {
		*v = (*v)[:n]
		return v
	}
	b := make([]byte, n, 1<<(c+dirtyMinShift))
	return &b
}

func (p *dirtyPool) Put(b *[]byte) {
	c := cap(*b)
	if c < 1<<dirtyMinShift || c&(c-1) != 0 {
		return // not one of ours
	}
	k := bits.Len(uint(c)) - 1 - dirtyMinShift
	if k < len(p.classes) {
		p.classes[k].Put(b)
	}
}

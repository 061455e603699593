package contrastive

import (
	"context"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/infonce/infonce/gemm"
)

// Collective is the one communication primitive the objectives need.
type Collective interface {
	// Rank is this process's rank in [0, Size()).
	Rank() int
	// Size is the number of ranks K.
	Size() int
	// AllGather concatenates every rank's send, in rank order, into recv;
	// counts[r] is rank r's byte count and len(recv) = Σ counts.
	AllGather(ctx context.Context, send, recv []byte, counts []int) error
}

// Single is the 1-rank Collective of the single-process trainer: its
// AllGather copies send into recv.
type Single struct{}

// Rank implements Collective.
func (Single) Rank() int { return 0 }

// Size implements Collective.
func (Single) Size() int { return 1 }

// AllGather implements Collective.
func (Single) AllGather(ctx context.Context, send, recv []byte, counts []int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(counts) != 1 || counts[0] != len(send) || len(recv) != len(send) {
		return fmt.Errorf("contrastive: single all-gather: send %d bytes, recv %d bytes, counts %v", len(send), len(recv), counts)
	}
	copy(recv, send)
	return nil
}

// errNoRows is returned when the global batch is empty.
var errNoRows = errors.New("contrastive: global batch is empty")

// layout is rank k's view of the global batch: it owns rows [off, off+b)
// of B.
type layout struct {
	rank, size int
	b, B, off  int
}

// newLayout checks counts against the collective and locates this rank's
// rows.
func newLayout(coll Collective, counts []int) (layout, error) {
	if coll == nil {
		return layout{}, errors.New("contrastive: nil collective")
	}
	l := layout{rank: coll.Rank(), size: coll.Size()}
	if len(counts) != l.size {
		return l, fmt.Errorf("contrastive: %d row counts for %d ranks", len(counts), l.size)
	}
	if l.rank < 0 || l.rank >= l.size {
		return l, fmt.Errorf("contrastive: rank %d outside [0, %d)", l.rank, l.size)
	}
	for r, c := range counts {
		if c < 0 {
			return l, fmt.Errorf("contrastive: rank %d has negative row count %d", r, c)
		}
		if r < l.rank {
			l.off += c
		}
		l.B += c
	}
	if l.B == 0 {
		return l, errNoRows
	}
	l.b = counts[l.rank]
	return l, nil
}

// checkLen reports a buffer whose length is not rows×d.
func checkLen[T any](name string, x []T, rows, d int) error {
	if len(x) != rows*d {
		return fmt.Errorf("contrastive: %s has %d elements, want %d rows × %d = %d", name, len(x), rows, d, rows*d)
	}
	return nil
}

// checkScale rejects a logit scale that is not a finite number.
func checkScale[T gemm.Float](s T) error {
	if math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
		return fmt.Errorf("contrastive: logit scale %v is not finite", s)
	}
	return nil
}

// chunkOf returns the column chunk width for n columns.
func chunkOf(chunk, n int) (int, error) {
	if chunk < 0 {
		return 0, fmt.Errorf("contrastive: negative chunk %d", chunk)
	}
	if chunk == 0 {
		chunk = DefaultChunk
	}
	return max(1, min(chunk, n)), nil
}

// DefaultChunk is the column chunk width used when Chunk is 0.
const DefaultChunk = 1024

// asBytes views x as its in-memory bytes, without a copy.
func asBytes[E any](x []E) []byte {
	if len(x) == 0 {
		return []byte{}
	}
	var e E
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(x))), len(x)*int(unsafe.Sizeof(e)))
}

// gatherRows all-gathers rows of width elements: rank r contributes
// counts[r] rows, recv receives Σ counts rows in rank order. bc is a
// reusable byte-count buffer.
func gatherRows[E any](ctx context.Context, coll Collective, send, recv []E, counts []int, width int, bc *[]int) error {
	var e E
	size := int(unsafe.Sizeof(e)) * width
	*bc = grow(*bc, len(counts))
	for r, c := range counts {
		(*bc)[r] = c * size
	}
	return coll.AllGather(ctx, asBytes(send), asBytes(recv), *bc)
}

// grow returns x resliced to n elements, reallocating only when its
// capacity is too small. The contents are not preserved.
func grow[E any](x []E, n int) []E {
	if cap(x) < n {
		return make([]E, n)
	}
	return x[:n]
}

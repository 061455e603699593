package model

import (
	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/vec"
)

// elementwiseChunk is the number of elements an element-wise operation
// handles at once, the unit of its split over goroutines: a chunk of its
// operands stays in the L1 cache between the steps of an operation made of
// two passes (a copy, then an add). A multiple of 8, so that every chunk
// but the last hands package vec whole 8-lane vectors, whose assembly and
// portable tails may round differently (GELU): each element then goes
// through the same arithmetic for any split.
const elementwiseChunk = 4096

// elementwiseParallelMin is the fewest elements a goroutine of an
// element-wise operation takes, a multiple of elementwiseChunk.
const elementwiseParallelMin = 1 << 15

// elementwise runs an operation on matching elements of dst, a and b
// (each of the same length, b possibly unused) in parallel, chunk by
// chunk. The operations are element by element, so the bits of dst do not
// depend on the split. A layer keeps one elementwise; its body is made
// once, so a call allocates nothing.
type elementwise[T gemm.Float] struct {
	par       parallelFor
	body      func(k, lo, hi int)
	op        elementwiseOp
	dst, a, b []T
}

// elementwiseOp names the operation of an elementwise run. (A generic
// function value would allocate each call.)
type elementwiseOp int

const (
	opSum      elementwiseOp = iota // sumOp
	opReLU                          // reluOp
	opReLUGrad                      // reluGradOp
	opGELU                          // vec.GELU, float32 only (GELU.Fast32)
	opGELUGrad                      // vec.GELUGrad of dy = a, x = b, float32 only
)

// run sets dst from a and b (nil when op reads only a) with op.
func (e *elementwise[T]) run(op elementwiseOp, dst, a, b []T) {
	if e.body == nil {
		e.body = e.chunks
	}
	e.op, e.dst, e.a, e.b = op, dst, a, b
	chunks := (len(dst) + elementwiseChunk - 1) / elementwiseChunk
	e.par.run(chunks, elementwiseParallelMin/elementwiseChunk, e.body)
	e.dst, e.a, e.b = nil, nil, nil
}

// chunks runs the operation over chunks [lo, hi).
func (e *elementwise[T]) chunks(_, lo, hi int) {
	for k := lo; k < hi; k++ {
		c, d := k*elementwiseChunk, min((k+1)*elementwiseChunk, len(e.dst))
		dst, a := e.dst[c:d], e.a[c:d]
		switch e.op {
		case opSum:
			sumOp(dst, a, e.b[c:d])
		case opReLU:
			reluOp(dst, a)
		case opReLUGrad:
			reluGradOp(dst, a, e.b[c:d])
		case opGELU:
			vec.GELU(any(dst).([]float32), any(a).([]float32))
		case opGELUGrad:
			vec.GELUGrad(any(dst).([]float32), any(a).([]float32), any(e.b[c:d]).([]float32))
		}
	}
}

// sumOp sets dst = a + b.
func sumOp[T gemm.Float](dst, a, b []T) {
	copy(dst, a)
	addTo(dst, b)
}

// reluOp sets dst = max(a, 0).
func reluOp[T gemm.Float](dst, a []T) {
	if d32, ok := any(dst).([]float32); ok {
		vec.ReLU(d32, any(a).([]float32))
		return
	}
	for i, v := range a {
		dst[i] = max(v, 0)
	}
}

// reluGradOp sets dst = dy ⊙ [y > 0].
func reluGradOp[T gemm.Float](dst, dy, y []T) {
	if d32, ok := any(dst).([]float32); ok {
		vec.ReLUGrad(d32, any(dy).([]float32), any(y).([]float32))
		return
	}
	for i, v := range y {
		if v > 0 {
			dst[i] = dy[i]
		} else {
			dst[i] = 0
		}
	}
}

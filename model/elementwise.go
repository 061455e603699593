package model

import (
	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/vec"
)

// elementwiseChunk is the number of elements an element-wise operation
// handles at once: a chunk of its operands stays in the L1 cache between
// the steps of an operation made of two passes (a copy, then an add).
const elementwiseChunk = 4096

// elementwiseParallelMin is the fewest elements a goroutine of an
// element-wise operation takes.
const elementwiseParallelMin = 1 << 15

// elementwise runs an operation on matching elements of dst, a and b
// (each of the same length, b possibly unused) in parallel, chunk by
// chunk. The operations are element by element, so the bits of dst do not
// depend on the split. A layer keeps one elementwise per buffer it writes;
// its body is made once, so a call allocates nothing.
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
)

// run sets dst from a and b (nil when op reads only a) with op.
func (e *elementwise[T]) run(op elementwiseOp, dst, a, b []T) {
	if e.body == nil {
		e.body = e.chunks
	}
	e.op, e.dst, e.a, e.b = op, dst, a, b
	e.par.run(len(dst), elementwiseParallelMin, e.body)
	e.dst, e.a, e.b = nil, nil, nil
}

func (e *elementwise[T]) chunks(_, lo, hi int) {
	for c := lo; c < hi; c += elementwiseChunk {
		d := min(c+elementwiseChunk, hi)
		dst, a := e.dst[c:d], e.a[c:d]
		switch e.op {
		case opSum:
			sumOp(dst, a, e.b[c:d])
		case opReLU:
			reluOp(dst, a)
		case opReLUGrad:
			reluGradOp(dst, a, e.b[c:d])
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

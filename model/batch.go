package model

import "github.com/infonce/infonce/gemm"

// Batch is the input of a tower: N rows of one view. A tower reads the
// fields of its kind: dense rows in X (image pixels, action chunks), or
// token ids in IDs.
type Batch[T gemm.Float] struct {
	// N is the number of rows.
	N int
	// X holds N dense rows, row-major (an image tower's pixels).
	X []T
	// IDs holds the rows' token ids, concatenated; row i is
	// IDs[Offsets[i]:Offsets[i+1]] (the last row runs to len(IDs)).
	IDs     []int32
	Offsets []int32
}

// Rows is the Batch of n dense rows x.
func Rows[T gemm.Float](x []T, n int) Batch[T] { return Batch[T]{N: n, X: x} }

// Bags is the Batch of n rows of token ids, row i being
// ids[offsets[i]:offsets[i+1]].
func Bags[T gemm.Float](ids, offsets []int32, n int) Batch[T] {
	return Batch[T]{N: n, IDs: ids, Offsets: offsets}
}

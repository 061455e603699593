package model

import "github.com/infonce/infonce/vec"

// The float32 GELU of the transformer, ViT and CNN towers (GELU with
// Fast32): Forward is vec.GELU, y = x Φ(x), and Backward vec.GELUGrad,
// ∂L/∂x = dy ⊙ (Φ(x) + x φ(x)), which recomputes Φ and φ from the x kept
// by Forward rather than storing them (see package vec for the
// approximation and its error, below 1.5 float32 ulps of max(1, |x|)).
// Both run over the elements in blocks of geluBlock, split over
// goroutines by a parallelFor. The float64 path and a GELU without Fast32
// take math.Erf in float64.

// geluBlock is the number of elements of a unit of work of a parallel
// GELU. A multiple of 8, so that every part of a split but the last hands
// package vec whole 8-lane vectors and each element goes through the same
// arithmetic for any number of parts: the result is the same bit for bit.
const geluBlock = 1024

// geluParallelMin is the fewest blocks a goroutine of a parallel GELU
// takes: below 2·geluParallelMin blocks one goroutine does the whole layer.
const geluParallelMin = 16

// geluBlocks is the number of blocks of n elements.
func geluBlocks(n int) int { return (n + geluBlock - 1) / geluBlock }

// forwardBlocks is a parallelFor body: y = x Φ(x) over blocks
// [lo, hi) of the operands of the running Forward.
func (g *GELU[T]) forwardBlocks(_, lo, hi int) {
	lo, hi = lo*geluBlock, min(hi*geluBlock, len(g.x32))
	vec.GELU(g.y32[lo:hi], g.x32[lo:hi])
}

// backwardBlocks is a parallelFor body: dx = dy ⊙ (Φ(x) + x φ(x))
// over blocks [lo, hi) of the operands of the running Backward.
func (g *GELU[T]) backwardBlocks(_, lo, hi int) {
	lo, hi = lo*geluBlock, min(hi*geluBlock, len(g.x32))
	vec.GELUGrad(g.dx32[lo:hi], g.dy32[lo:hi], g.x32[lo:hi])
}

package model

import "github.com/infonce/infonce/gemm"

// gradArena lends the buffers that carry ∂L/∂x from layer to layer while a
// tower runs Backward. A layer's input gradient is read once, by the layer
// before it, and is dead afterwards; a buffer of its own per layer would
// keep the gradient of every activation of the batch alive at once, as
// much memory again as the activations. With an arena a tower holds only
// the gradients that are live together: the one a layer reads, the one it
// writes, and those a residual branch keeps aside.
//
// A tower resets its arena when its Backward begins, which takes back
// every buffer; layers take their ∂L/∂x buffers from it (gradBuf), and a
// layer that has consumed a gradient it got from a child gives it back
// (give), to be lent again within the same Backward. Buffers are taken
// best fit, in the same order every step, so after the first steps the
// arena allocates nothing. A slice from a layer's Backward stays valid
// until its consumer gives it back or the tower's next Backward.
type gradArena[T gemm.Float] struct {
	free, lent [][]T
}

// reset takes back every lent buffer (nothing for a nil arena).
func (a *gradArena[T]) reset() {
	if a == nil {
		return
	}
	a.free = append(a.free, a.lent...)
	clear(a.lent)
	a.lent = a.lent[:0]
}

// take lends a buffer of n elements: the free buffer of the smallest
// capacity that holds n, or a new one.
func (a *gradArena[T]) take(n int) []T {
	best := -1
	for i, f := range a.free {
		if cap(f) >= n && (best < 0 || cap(f) < cap(a.free[best])) {
			best = i
		}
	}
	var buf []T
	if best < 0 {
		buf = make([]T, n)
	} else {
		buf = a.free[best][:n]
		last := len(a.free) - 1
		a.free[best] = a.free[last]
		a.free[last] = nil
		a.free = a.free[:last]
	}
	a.lent = append(a.lent, buf)
	return buf
}

// give takes back buf if the arena lent it; any other slice (a gradient
// from outside the tower, nil) is left alone.
func (a *gradArena[T]) give(buf []T) {
	if a == nil || cap(buf) == 0 {
		return
	}
	for i, l := range a.lent {
		if sameBuffer(l, buf) {
			last := len(a.lent) - 1
			a.lent[i] = a.lent[last]
			a.lent[last] = nil
			a.lent = a.lent[:last]
			a.free = append(a.free, l)
			return
		}
	}
}

// gradBuf returns the buffer of n elements a layer writes its ∂L/∂x to:
// one lent by the arena a, or without an arena the layer's own buffer own,
// grown as needed.
func gradBuf[T gemm.Float](a *gradArena[T], own []T, n int) []T {
	if a == nil {
		return grow(own, n)
	}
	return a.take(n)
}

// arenaRef is the arena a layer writes its ∂L/∂x to (nil for none);
// embedded, it makes the layer an arenaUser.
type arenaRef[T gemm.Float] struct {
	grads *gradArena[T]
}

func (r *arenaRef[T]) setArena(a *gradArena[T]) { r.grads = a }
func (r *arenaRef[T]) arena() *gradArena[T]     { return r.grads }

// arenaUser is a layer that writes its ∂L/∂x to buffers of an arena, and
// passes the arena on to the layers it is made of.
type arenaUser[T gemm.Float] interface {
	setArena(a *gradArena[T])
	arena() *gradArena[T] // nil without one
}

// useArena gives l, and the layers it is made of, the arena a, when l
// takes one.
func useArena[T gemm.Float](l any, a *gradArena[T]) {
	if u, ok := l.(arenaUser[T]); ok {
		u.setArena(a)
	}
}

// sameBuffer reports whether x and y start at the same element.
func sameBuffer[T gemm.Float](x, y []T) bool {
	return cap(x) > 0 && cap(y) > 0 && &x[:1][0] == &y[:1][0]
}

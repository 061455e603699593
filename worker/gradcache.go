package worker

import (
	"fmt"

	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/model"
)

// Micro-batched steps (--micro-batch m): gradient caching as in Gao et al.
// 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
// Setup", §3. With f the tower, θ its parameters and x_i its rows,
//
//	1. u_i = f(x_i; θ) for every local row, m rows at a time, keeping only
//	   the embeddings (each micro-batch's activations are overwritten by the
//	   next one's);
//	2. the objective's loss and g_i = ∂L/∂u_i over the whole global batch,
//	   unchanged (Loss sees the embeddings of every row, as in one pass);
//	3. for each micro-batch M: encode it again, with its activations, and
//	   backpropagate its slice of the gradient: ∂L/∂θ = Σ_M Σ_{i∈M} g_iᵀ ∂u_i/∂θ
//	   (eq. 4 of the paper), the towers' Backward accumulating into P.G.
//
// Every tower is a function of one row at a time (no batch statistics:
// GroupNorm, LayerNorm, attention within a row), so the sum over
// micro-batches is the gradient of the one-pass step, up to the rounding of
// the different sums. The activations held at once are those of m rows of
// one tower, whatever the local batch; the embeddings and their gradients
// (2·d values per encoded row) are kept for every row. A tower whose rows
// fit one micro-batch runs in one pass, as without micro-batches.

// towerCache is one tower's state in a micro-batched step: the input whose
// rows the backward pass encodes again (N = 0 when the tower ran in one
// pass) and the embeddings of the first pass.
type towerCache[T gemm.Float] struct {
	in  model.Batch[T]
	emb []T
}

// microRows returns rows [lo, hi) of in as a Batch of their own: a view of
// in.X, or of in.IDs with the offsets rebased to start at 0 in *offsets
// (grown as needed; the Batch refers to it until the next call).
func microRows[T gemm.Float](in model.Batch[T], lo, hi int, offsets *[]int32) model.Batch[T] {
	out := model.Batch[T]{N: hi - lo}
	if in.X != nil {
		w := len(in.X) / max(in.N, 1)
		out.X = in.X[lo*w : hi*w]
	}
	if in.Offsets != nil {
		start, end := in.Offsets[lo], int32(len(in.IDs))
		if hi < in.N {
			end = in.Offsets[hi]
		}
		*offsets = grow(*offsets, hi-lo)
		for i := range hi - lo {
			(*offsets)[i] = in.Offsets[lo+i] - start
		}
		out.IDs, out.Offsets = in.IDs[start:end], *offsets
	}
	return out
}

// encodeMicro is step 1: the embeddings of in's rows by tower, m rows at a
// time, copied into emb (grown to in.N·d) and returned.
func encodeMicro[T gemm.Float](tower model.Tower[T], in model.Batch[T], m, d int, emb *[]T, offsets *[]int32) ([]T, error) {
	*emb = grow(*emb, in.N*d)
	for lo := 0; lo < in.N; lo += m {
		hi := min(lo+m, in.N)
		e, err := tower.Forward(microRows(in, lo, hi, offsets))
		if err != nil {
			return nil, fmt.Errorf("micro-batch of rows %d…%d: %w", lo, hi-1, err)
		}
		copy((*emb)[lo*d:hi*d], e)
	}
	return *emb, nil
}

// backwardMicro is step 3: every micro-batch of in encoded again and its
// slice of g = ∂L/∂emb (in.N×d) backpropagated, the parameter gradients
// accumulating. ready, when set, is the gradient hook of an overlapped
// reduction: it is armed for the last micro-batch only, the one after
// which each gradient is final.
func backwardMicro[T gemm.Float](tower model.Tower[T], in model.Batch[T], g []T, m, d int, ready func([]T), offsets *[]int32) error {
	for lo := 0; lo < in.N; lo += m {
		hi := min(lo+m, in.N)
		if ready != nil {
			if hi == in.N {
				tower.SetGradReady(ready)
			} else {
				tower.SetGradReady(nil)
			}
		}
		if _, err := tower.Forward(microRows(in, lo, hi, offsets)); err != nil {
			return fmt.Errorf("micro-batch of rows %d…%d: %w", lo, hi-1, err)
		}
		if err := tower.Backward(g[lo*d : hi*d]); err != nil {
			return fmt.Errorf("micro-batch of rows %d…%d: %w", lo, hi-1, err)
		}
	}
	return nil
}

// Package optim updates one flat parameter buffer from one flat gradient
// buffer: SGD with (Nesterov) momentum, AdamW and LARS, together with the
// warm-up + cosine learning-rate schedule and global-norm gradient clipping.
//
// The parameters of a model live in a single contiguous slice w, and their
// gradients in a slice g of the same length. A Group names one tensor inside
// that buffer (its offset and length). Groups marked NoDecay (biases, norm
// gains, the logit scale) receive no weight decay and, for LARS, no
// trust-ratio adaptation. Elements that no group covers are treated as
// decayed tensors, one per uncovered run.
//
// Every optimizer allocates its state (the moments) once, when it is built;
// Step allocates nothing. State exposes the moment buffers in a fixed order
// so that a checkpoint can save them and restore them by copying back into
// the same slices; together with SetStep this reproduces the next update bit
// for bit.
//
// The update rules, with lr the learning rate η_t of the step, λ the weight
// decay and μ the momentum:
//
//	SGD:    g' = g + λw;  b ← μb + g';  w ← w − lr·b          (Nesterov: w ← w − lr·(g' + μb))
//	AdamW:  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  m̂ = m/(1−β₁ᵗ);  v̂ = v/(1−β₂ᵗ)
//	        w ← w − lr·(m̂/(√v̂ + ε) + λw)                       (decoupled decay, Loshchilov & Hutter 2019)
//	LARS:   r = η_T‖w‖/(‖g‖ + λ‖w‖ + ε) per tensor;  g' = g + λw;  b ← μb + r·g';  w ← w − lr·b
//	        (You, Gitman & Ginsburg 2017; r = 1 when ‖w‖ or ‖g‖ is zero, and for NoDecay tensors)
//
// Element-wise arithmetic is done in float64 and rounded to T once per
// stored value, so float32 and float64 buffers follow the same formulas.
package optim

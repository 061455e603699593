// Package model holds the encoders of infonce: one flat parameter buffer, one
// flat gradient buffer, and layers that own views into them.
//
// Every parameter tensor of a Model is a Segment of Params.W, and its
// gradient is the same Segment of Params.G. The all-reduce therefore sums one
// buffer, the optimizer steps one buffer and a checkpoint writes one buffer.
//
// Each layer has an explicit Forward and Backward, written after the formula
// it implements:
//
//	Linear        y = x Wᵀ + b                     ∂L/∂x = dy W, ∂L/∂W += dyᵀ x, ∂L/∂b += Σ_rows dy
//	ReLU          y = max(0, x)                    ∂L/∂x = dy ⊙ [x > 0]
//	GELU          y = x Φ(x)                       ∂L/∂x = dy ⊙ (Φ(x) + x φ(x))
//	LayerNorm     y = g ⊙ (x − μ)/σ + β            (see LayerNorm)
//	EmbeddingBag  y_i = (1/n_i) Σ_{j ∈ bag i} E[id_j]
//	L2Normalize   y = x/ν, ν = √(‖x‖² + ε²)        ∂L/∂x = (dy − y (y·dy))/ν
//
// Two towers are built from them. The image tower is an MLP
// (Linear → [LayerNorm] → activation, repeated, then Linear to the embedding
// dimension d) followed by L2 normalisation. The text tower is a mean-pooled
// EmbeddingBag → [LayerNorm] → activation → Linear(→d) → L2 normalisation.
// The learnable logit scale t (s = exp t) lives in the same buffer.
//
// Layers allocate their activation caches the first time a batch of a given
// size arrives and reuse them afterwards (they grow only for a larger batch),
// so a training step in the steady state allocates nothing. The slice a
// Forward returns is a view into such a cache and stays valid until the next
// Forward of the same layer. All matrix products go through gemm.Gemm.
//
// The element type is generic: float32 for training, float64 for exact
// gradient checks.
package model

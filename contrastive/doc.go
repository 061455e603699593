// Package contrastive holds the objectives of infonce: symmetric InfoNCE
// (CLIP), NT-Xent (SimCLR) and MoCo with a queue, each already in its exact
// data-parallel form.
//
// # Distributed form
//
// K ranks each own a contiguous slice R_k of the global batch of B rows
// (counts[k] = |R_k|, the same counts slice on every rank). Every objective
// returns, on rank k, this rank's share of the loss and of dL/dt (t the
// log of the logit scale, s = exp(t)) together with the exact gradient of
// the GLOBAL loss with respect to the rank's own embeddings. Loss shares are
// normalised by the global batch, so summing the shares over the ranks (the
// all-reduce of the trainer) gives exactly the single-process loss and
// gradient on the same B rows, whatever K is.
//
// The one collective the package needs is declared here as Collective (an
// all-gather of bytes in rank order); Single is its 1-rank form for the
// single-process trainer. Floating-point buffers travel as their in-memory
// bytes (unsafe.Slice views, no copies). The byte order is the host's, so
// every rank must run on a host of the same byte order; infonce assumes
// little-endian hosts (amd64, arm64).
//
// # CLIP
//
// S = s·U Vᵀ over the gathered global U, V (B×d each),
//
//	L = 1/(2B)·Σ_i [lse_j S_ij − S_ii] + 1/(2B)·Σ_j [lse_i S_ij − S_jj],
//
// and G = dL/dS = ((P − I) + (Q − I))/(2B) with P the row softmax and Q the
// column softmax. Rank k needs only rows R_k and columns R_k of S. It
// all-gathers U and V, streams over column chunks of the gathered matrices
// to get the log-sum-exps of its own rows and its own columns (online,
// stable: running maximum and rescaled sum), all-gathers these 2B
// log-sum-exps, and streams the chunks once more to form
//
//	dL/du_i = s·Σ_j G_ij v_j  (i ∈ R_k),   dL/dv_j = s·Σ_i G_ij u_i  (j ∈ R_k).
//
// At most (local rows × Chunk) logits exist at any time, so the memory is
// O((b+B)·d + b·Chunk) instead of O(B²). When the global batch fits one
// chunk (B ≤ Chunk), the two b×B blocks of S are kept from the first pass
// to the second instead of being computed twice. With false-negative masking the
// positives of row i are all columns with the same caption id, the row loss
// becomes lse_j S_ij − lse_{j∈P(i)} S_ij, and the positive log-sum-exps are
// gathered as well.
//
// # NT-Xent and MoCo
//
// NT-Xent follows the same two-pass pattern over the 2B gathered views.
// MoCo's logits of a query involve only its own key and the queue, which is
// identical on every rank, so its loss needs no communication; Enqueue
// all-gathers the keys so that every rank pushes the same B keys.
//
// # Hard and debiased negatives
//
// CLIP (both directions), NTXent and MoCo (the queue's keys) take a
// Negatives: the hard-negative reweighting of Robinson et al. 2021
// (negatives importance-weighted by e^{β·x}, x the logit, normalised over
// the negatives) and the debiased estimator of Chuang et al. 2020 (class
// prior τ⁺, clamped at e^{−s}). An anchor's loss then needs, beside the
// sum over its positives, two sums over the global negatives, Σ e^{(1+β)x}
// and Σ e^{βx}; they are accumulated in the same streamed pass as the
// log-sum-exps, each rank turns those of its own anchors into the few
// per-anchor terms of the gradient, and these are all-gathered where the
// plain objective gathers its log-sum-exps, so K ranks still equal one.
// Under false-negative masking, every row with the anchor's id is a
// positive and never a negative. The zero Negatives runs the plain code.
//
// # Precision
//
// Float64 objectives use math.Exp and float64 sums throughout (the exact
// gradient checks rely on it). Float32 objectives compute the streamed
// log-sum-exps and the softmax coefficients with the vectorised float32
// kernels of package vec (exp within 2 ulp, float32 sums within a chunk
// row, float64 across rows); the entries that carry an indicator term (the
// diagonal, the positives, NT-Xent's partner view) are recomputed in
// float64, since there the indicator cancels most of the probability.
//
// Work buffers live in the objective structs and are reused: after the
// first call with a given shape, Compute allocates nothing.
package contrastive

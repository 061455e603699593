// Package eval measures how good a set of embeddings is: zero-shot
// classification accuracy, image↔text retrieval recall@k and ranks, a linear
// probe on frozen features, and the alignment and uniformity of the
// embedding distribution.
//
// Embeddings are row-major n×d slices, one row per item, L2-normalised by the
// caller, so that a dot product is a cosine similarity. Every similarity
// matrix is computed with gemm.Gemm one block of rows at a time, so memory
// stays O(block·n) even for tens of thousands of items. Every function is
// deterministic: equal scores are ordered by index (as a stable sort would
// order them), sums are accumulated in float64 in a fixed order, and the
// linear probe draws its mini-batches from a PCG generator seeded by its
// configuration.
//
// The metrics follow their usual definitions:
//
//   - ZeroShot (Radford et al. 2021): the predicted class of image i is
//     argmax_c ⟨x_i, w_c⟩ over class embeddings w_c, each the renormalised
//     mean of its prompt templates (ClassEmbeddings); top-1 and top-5
//     accuracy.
//   - Retrieval (as OpenCLIP's retrieval metrics): the caption of image i is
//     text i; for each query the 1-based rank of its match among all n
//     candidates gives R@1, R@5, R@10, the mean rank and the median rank
//     (floor of the median 0-based rank, plus one).
//   - LinearProbe: multinomial logistic regression on standardised frozen
//     features, trained by mini-batch gradient descent, scored by test
//     accuracy.
//   - AlignmentUniformity (Wang & Isola 2020): ℓ_align = E‖x_i − y_i‖²
//     and ℓ_uniform = log E_{i≠j} exp(−2‖x_i − x_j‖²).
//
// Size mismatches between the slices and the stated shapes are programming
// errors and panic with a message naming the argument; LinearProbe, whose
// inputs come from data files, returns errors instead.
package eval

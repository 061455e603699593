// Package dataset holds what a training run reads: labelled image data sets,
// the captions and tokens of their text side, the SimCLR augmentations of
// their images, and the sampler that turns a global step into the indices of
// a global batch.
//
// # Data sets
//
// MNIST is embedded in the binary (the four gzip-compressed idx files, see
// mnist/ATTRIBUTION.md), so Load("mnist", "") works anywhere. Other data
// sets of small grey images come as a directory of idx files,
// Load("idx:DIR", classesFile). ReadIDX decodes one idx file (unsigned bytes
// only, gzip detected by its magic) and refuses anything malformed with an
// error that says what is wrong.
//
// # Captions and tokens
//
// For contrastive image–text training (CLIP) every image needs a caption. A
// Captioner renders a class name through one of a few templates ("a photo
// of the digit seven", "an image of the number 7"); Pick chooses the
// template of a sample from (seed, epoch, sample) alone. Equal caption
// texts share an ID, which the loss uses to mask false negatives: two
// images of one class captioned by the same text are not negatives of each
// other. A Tokenizer turns captions into word ids over a sorted vocabulary.
//
// # Augmentations
//
// SimCLR's two views of an image are Augment(cfg, seed, step, sample, 0, …)
// and Augment(…, 1, …): random resized crop, translation and rotation as one
// affine map sampled bilinearly, contrast and brightness, Gaussian noise and
// random erasing. A view is a pure function of its key, so it does not
// matter which rank computes it, and Augment does not allocate.
//
// # Sampling and sharding
//
// Sampler implements step 1 of the training step: epoch e is a seeded
// permutation π_e of the N samples, cut into ⌊N/B⌋ windows of the global
// batch size B, and step t reads window t mod ⌊N/B⌋ of epoch t / ⌊N/B⌋. Rank
// k of K takes the contiguous rows Shard(B, K, k) of the window. The global
// batches do not depend on K, so a run that changes its number of workers
// in the middle of an epoch neither skips nor repeats a sample, and K
// workers see exactly the batches one worker would.
//
// Every random choice in the package is a pure function of an explicit
// seed and a key, through a PCG generator (math/rand/v2) seeded by a hash
// of that key; there is no global random state.
package dataset

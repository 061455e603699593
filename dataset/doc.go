// Package dataset holds what a training run reads: the sources of samples
// (labelled image sets, image–text manifests and shards, robot episodes),
// the captions and tokens of their text side, the decoding and the SimCLR
// augmentations of their images, and the sampler that turns a global step
// into the indices of a global batch.
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
// The epoch's order can be rearranged as a pure function of π_e and
// per-sample ids: CappedOrder bounds the samples of one episode in a
// batch, and BundleOrder keeps the samples of a bundle together, such as
// the siblings of SceneBundles (the episodes of one scene, phase by phase).
//
// # Sources
//
// A Source gives random access to the samples of one split: Len, the
// Fields every sample carries, and Sample(ctx, i, dst), which fills a
// Sample with named fields (a decoded HWC Picture, a text, a label, an
// action and state, the episode and step). Open makes a Source of a spec:
//
//	mnist, idx:DIR      Load + Split (grey images and labels)
//	synthetic[:N]       random samples of configured shapes, for speed
//	folder:DIR          an ImageFolder tree        (package dataset/folder)
//	csv:FILE            a CSV/TSV/JSONL manifest   (package dataset/manifest)
//	wds:PATTERN         WebDataset tar shards      (package dataset/wds)
//	rlds:DIR            a TFDS RLDS folder, a sample per step (package dataset/rlds)
//
// The last four register themselves with Register when imported; the
// program imports dataset/sources once to have them all. Their codecs are
// packages of their own: dataset/npy (.npy arrays), dataset/tfrecord
// (TFRecord framing and tf.train.Example), dataset/shardidx (the member and
// record indexes kept beside shards).
//
// A caller reads a global batch as the sampler gives it, each rank only
// its rows:
//
//	src, err := dataset.Open(spec, dataset.OpenOptions{Seed: seed})
//	...
//	epoch, idx := sampler.Batch(step, idx)       // the global batch
//	lo, hi := dataset.Shard(B, K, k)             // this rank's rows
//	for _, i := range idx[lo:hi] {
//		err := src.Sample(ctx, i, &s)
//		var bad *dataset.BadSample
//		if errors.As(err, &bad) { count[bad.Reason]++; continue } // or substitute
//		...
//		dataset.View(cfg, dataset.RGB(s.Image), seed, epoch, i, v, row) // v = 0, 1
//	}
//
// Sample is safe for concurrent use, so a pool of goroutines can decode
// the rows of a rank in parallel, each with its own Sample value. A sample
// that cannot be used returns a *BadSample whose Reason is a stable word
// (corrupt-image, missing-text, truncated-tar, crc-mismatch, bad-npy,
// non-finite-action, …); it is to be counted and skipped, never fatal. A
// source that does not exist or holds no usable sample fails in Open with
// an error that says what was looked for.
//
// # Views of colour images
//
// DecodeImage decodes PNG, JPEG and GIF into a Picture (grey stays one
// channel, transparency is composited onto a background, white by
// default). View turns a Picture into one S×S float32 CHW row normalised
// per channel: EvalViewConfig resizes the shorter side and crops the
// centre; SimCLRViewConfig draws SimCLR's augmentation (random resized
// crop, flip, colour jitter, grayscale, Gaussian blur, with the paper's
// probabilities) from (seed, epoch, sample, view) alone. Resizing averages
// areas when it shrinks and interpolates bilinearly when it enlarges.
//
// Every random choice in the package is a pure function of an explicit
// seed and a key, through a PCG generator (math/rand/v2) seeded by a hash
// of that key; there is no global random state.
package dataset

// Package wds reads WebDataset tar shards as a dataset.Source with random
// access, and registers the scheme "wds:PATTERN" with dataset.Open.
//
// PATTERN names the shards with brace expansion as webdataset writes it:
// "shards/{000000..000099}.tar" is a zero-padded range (padded to the
// longer bound when a bound starts with 0), "{a,b,c}" a list, and several braces expand in
// turn; Expand implements it. A pattern may also be a single path. Shards
// are plain tar files: a compressed shard (.tar.gz, .tar.zst) cannot be
// read at random and is refused with an error that says so.
//
// # Samples
//
// The members of a shard whose names share a key, the path up to the
// first dot of the base name ("dir/000123.jpg" has key "dir/000123" and
// extension "jpg"), and that follow one another form one sample. The
// extensions read are
//
//	jpg, jpeg, png, gif     the image (Sample.Image)
//	txt, text, caption      the caption (Sample.Text)
//	cls                     the class, a decimal integer (Sample.Label)
//	json                    metadata: "caption" or "text" when there is no
//	                        txt, "label" when there is no cls, "task" and
//	                        "episode"/"step"/"episode_len" copied to Sample
//	npy, action.npy         the action (Sample.Action, shape as stored)
//	state.npy               the state (Sample.State)
//
// Other extensions are ignored; a sample with none of the above is a bad
// sample with reason "unknown-member".
//
// # Index
//
// Each shard is scanned once for the offset and size of every member; the
// index is stored beside the shard (SHARD.idx) or in a cache folder and
// reused while the shard's size and modification time are unchanged (see
// package shardidx). Sample i is then a few positioned reads. A truncated
// shard keeps its complete samples; the last sample, which the cut (in a
// member's data or in a header) may have robbed of members, is a bad
// sample with reason "truncated-tar" ("corrupt-tar" when a header does not
// parse).
//
// The fields of the source are those that at least half of the samples
// carry; a sample that lacks one of them is bad ("missing-image",
// "missing-text", "missing-label", "missing-action").
//
// # Writing
//
// Members encodes a dataset.Sample as the members above (the image as a
// lossless PNG, so that the pixels read back are the same bytes; the
// action as key.npy and the state as key.state.npy; the episode, step,
// episode length and task as key.json), and a Writer appends samples to
// numbered shards DIR/000000.tar, DIR/000001.tar, … of a fixed number of
// samples, storing beside each the index the reader would build.
package wds

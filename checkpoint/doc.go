// Package checkpoint is the on-disk format of training state.
//
// A checkpoint is one directory under a root, named after the global step it
// completed:
//
//	ROOT/step-000000000123/
//	    manifest.json     step, epoch, sampler cursor, generation, config, RNG, file list
//	    params.zst        zstd-compressed blobs, any names the caller gives
//	    adam_m.zst
//	    ...
//
// The manifest lists every blob file with its size on disk, its raw
// (decompressed) size, the SHA-256 of its on-disk bytes and its encoding, and
// carries a SHA-256 of its own canonical encoding, so damage to the step,
// sampler cursor, RNG state or config is caught like damage to a blob. A blob
// named "params" is stored as params.zst and listed under that file name.
//
// # Atomicity
//
// [Store.Save] writes everything into a temporary directory ROOT/.tmp-step-…,
// fsyncs every file, writes the manifest last, fsyncs it and the directory,
// renames the directory to its final name in one step and fsyncs ROOT. A
// directory with a final name is therefore always complete: a process killed
// at any instant leaves either the new checkpoint or nothing of it under a
// final name (only a .tmp-* directory, which readers ignore and the next Save
// removes). Retention removes old checkpoints by first renaming them back to a
// .tmp-* name, so a deletion cut short never leaves a half-deleted checkpoint
// under a final name either.
//
// A root has one writer at a time: Save holds an exclusive advisory lock on
// ROOT/.lock (flock, released by the kernel when the process dies) on the
// systems that have it, and waits for it at most Store.LockWait
// (ErrLocked). A root also holds one run's checkpoints: a manifest may
// name its run (Manifest.RunID), and Save refuses to add a checkpoint of
// one run to a root that holds another's (ErrOtherRun); Store.Clear
// empties a root under the lock.
//
// # Verification
//
// [Load] checks the manifest (size limit, format version, file names, sizes
// bounded), then for every file its size and SHA-256, then decompresses it
// with a memory-bounded decoder and checks the raw size. [Store.LoadLatest]
// tries checkpoints from the highest step down, logs a warning naming each one
// that fails and why, and returns the first that passes. [Verify] reports every
// problem of one directory instead of the first.
//
// Checkpoints are ordered by step only. After a rollback to an older
// checkpoint, directories of higher steps written before the rollback stay
// and remain "latest" until the run overtakes them or they are removed.
//
// Blobs are raw bytes; [Float32Bytes], [BytesFloat32], [Float64Bytes] and
// [BytesFloat64] convert flat parameter and optimizer buffers with an explicit
// little-endian layout, so a checkpoint reads the same on every machine.
package checkpoint

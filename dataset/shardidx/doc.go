// Package shardidx keeps the index of a shard file (the members of a tar,
// the records of a TFRecord file): one Entry per item, with its name, the
// offset and size of its bytes, and a count N whose meaning the user of
// the index gives (steps of an episode, flags of a member).
//
// An index is built once, by a scan of the shard, and stored beside it as
// SHARD.idx when the shard's folder is writable, otherwise in a cache
// folder under a name derived from the shard's absolute path. The stored
// index records the shard's size and modification time and the kind of
// index; Load reuses it only while all three match, so a shard that is
// rewritten is scanned again. The file format is
//
//	"infonce-shardidx 1\n"
//	kind, size, mtime (ns), entry count
//	entries: name, offset, size, n
//	CRC-32 (IEEE) of everything before it, little-endian
//
// with strings as uvarint length and bytes and numbers as varints.
package shardidx

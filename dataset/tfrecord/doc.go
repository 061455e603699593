// Package tfrecord reads and writes TFRecord files and the
// tf.train.Example messages they usually carry, without a protobuf
// library.
//
// A TFRecord file is a sequence of records, each framed as
//
//	uint64 length (little-endian)
//	uint32 masked CRC-32C of the 8 length bytes
//	length bytes of data
//	uint32 masked CRC-32C of the data
//
// where the mask of a CRC c is ((c >> 15) | (c << 17)) + 0xa282ead8 and
// CRC-32C is the Castagnoli polynomial. Writer writes records; Scan walks
// a file and returns every record's offset and length, which is the index
// that gives random access; ReadAt reads one record at a known offset and
// checks both CRCs.
//
// Example is the decoded form of a tf.train.Example: a map from feature
// name to a Feature holding one of a bytes list, a float list or an int64
// list. DecodeExample implements the protobuf wire format by hand (varints,
// length-delimited fields, packed and unpacked repeated numbers, unknown
// fields skipped); Example.Marshal writes it back, numbers packed.
package tfrecord

// Package safetensors reads and writes the safetensors format of Hugging
// Face, the format PyTorch models exchange their weights in:
//
//	8 bytes   N, the length of the header, unsigned little-endian
//	N bytes   a JSON object: for each tensor "name": {"dtype": "F32",
//	          "shape": [2, 3], "data_offsets": [begin, end]}, and an
//	          optional "__metadata__": {"key": "value", ...} of strings;
//	          padded with spaces
//	the rest  the data: each tensor's bytes, little-endian in C order, at
//	          [begin, end) counted from the first byte after the header
//
// The tensors' byte ranges must tile the data exactly: no hole, no
// overlap, no byte left over, and end − begin must be the size of the
// dtype times the product of the shape. Decode checks all of it, so a
// truncated or forged file is an error naming what is wrong, never a
// panic or a silent misread. The dtypes F32, F64, I32 and I64 are
// supported (BF16, F16 and the others are refused by name).
//
// Write lays the tensors out in the order given, header padded to a
// multiple of 8 bytes as the reference implementation does.
package safetensors

// Package bpe is a byte-level byte-pair-encoding tokenizer (Sennrich et al.
// 2016; byte-level as in GPT-2 and CLIP) for the text tower.
//
// # Vocabulary
//
// Ids 0…255 are the 256 bytes, so every string, in any script or none,
// encodes: a word never seen in training falls back to its bytes. Ids
// 256…256+M−1 are the M learned merges in the order they were learned: merge
// k joins the pair (a_k, b_k) into the token 256+k whose bytes are those of
// a_k followed by those of b_k. The last three ids are the special tokens
// start-of-text (SOT = 256+M), end-of-text (EOT = 256+M+1) and padding
// (Pad = 256+M+2); no byte string maps to them. VocabSize is 256+M+3.
//
// # Words
//
// Text is first cut into words, and merges never cross a word boundary. A
// word is an optional single space followed by a run of letters, a run of
// digits or a run of other non-space characters; any other run of white
// space is a word of its own (a single space before a non-space character
// joins the next word). The cut is a partition of the bytes, invalid UTF-8
// included, so Decode(Tokens(s)) == s for every string s. Text is not
// lower-cased or otherwise normalised.
//
// # Training
//
// Train counts the words of a corpus and repeatedly merges the adjacent
// pair of tokens that occurs most often over all words (each word weighted
// by its count). Ties are broken by the smaller left id, then the smaller
// right id, so the merges depend on the multiset of words only, not on the
// order of the corpus or of a map. Training stops at the requested
// vocabulary size, or earlier when no pair occurs at least MinPairCount
// times; a pair whose token would exceed MaxTokenBytes bytes is never
// merged.
//
// # Encoding
//
// Tokens applies the merges to each word in training order: while some
// adjacent pair of the word is a merge, the pair of lowest rank is joined
// (every occurrence, left to right). Encode frames the tokens for a
// fixed-length context: SOT, the tokens, EOT, then Pad up to the context
// length; a text too long is cut so that EOT is still the last token. Decode
// drops the special tokens and concatenates the bytes of the others.
//
// # Serialised form
//
// MarshalBinary writes the magic "BPE\x01", the number of merges M and the
// pairs (a_k, b_k), all as unsigned varints: the merges determine the
// whole vocabulary. UnmarshalBinary refuses anything that Train could not
// have produced (a pair naming a later token, a repeated pair, a token
// longer than MaxTokenBytes, trailing bytes), so a decoded tokenizer can be
// trusted by the model's embedding table of VocabSize rows.
package bpe

package bpe

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

const (
	// NumBytes is the number of byte tokens, ids 0…255.
	NumBytes = 256
	// NumSpecial is the number of special tokens after the merges: SOT,
	// EOT and Pad.
	NumSpecial = 3
	// MaxTokenBytes is the longest byte string a token may stand for.
	MaxTokenBytes = 64
	// MinPairCount is the fewest occurrences for a pair to be merged.
	MinPairCount = 2
)

// pair is two adjacent tokens (a, b).
type pair struct{ a, b int32 }

// Tokenizer is a trained byte-level BPE vocabulary. It is safe for
// concurrent use: encoding only reads it.
type Tokenizer struct {
	merges []pair         // merge k makes token NumBytes+k
	rank   map[pair]int32 // (a, b) → the token it makes
	off    []int32        // token t's bytes are bytes[off[t]:off[t+1]]
	bytes  []byte
}

// newTokenizer builds the tables of a merge list, refusing a list Train
// could not have produced.
func newTokenizer(merges []pair) (*Tokenizer, error) {
	t := &Tokenizer{
		merges: merges,
		rank:   make(map[pair]int32, len(merges)),
		off:    make([]int32, 0, NumBytes+len(merges)+1),
	}
	for c := 0; c < NumBytes; c++ {
		t.off = append(t.off, int32(c))
		t.bytes = append(t.bytes, byte(c))
	}
	t.off = append(t.off, NumBytes)
	for k, p := range merges {
		z := int32(NumBytes + k)
		if p.a < 0 || p.b < 0 || p.a >= z || p.b >= z {
			return nil, fmt.Errorf("bpe: merge %d joins (%d, %d), want ids below %d", k, p.a, p.b, z)
		}
		if _, dup := t.rank[p]; dup {
			return nil, fmt.Errorf("bpe: merge %d repeats the pair (%d, %d)", k, p.a, p.b)
		}
		if n := t.tokenLen(p.a) + t.tokenLen(p.b); n > MaxTokenBytes {
			return nil, fmt.Errorf("bpe: merge %d makes a token of %d bytes, more than %d", k, n, MaxTokenBytes)
		}
		t.rank[p] = z
		t.bytes = append(t.bytes, t.tokenBytes(p.a)...)
		t.bytes = append(t.bytes, t.tokenBytes(p.b)...)
		t.off = append(t.off, int32(len(t.bytes)))
	}
	return t, nil
}

func (t *Tokenizer) tokenBytes(id int32) []byte { return t.bytes[t.off[id]:t.off[id+1]] }
func (t *Tokenizer) tokenLen(id int32) int      { return int(t.off[id+1] - t.off[id]) }

// NumMerges is M, the number of learned merges.
func (t *Tokenizer) NumMerges() int { return len(t.merges) }

// VocabSize is 256 + M + 3: the rows of the token embedding table.
func (t *Tokenizer) VocabSize() int { return NumBytes + len(t.merges) + NumSpecial }

// SOT is the start-of-text id.
func (t *Tokenizer) SOT() int32 { return int32(NumBytes + len(t.merges)) }

// EOT is the end-of-text id.
func (t *Tokenizer) EOT() int32 { return t.SOT() + 1 }

// Pad is the padding id.
func (t *Tokenizer) Pad() int32 { return t.SOT() + 2 }

// Token returns the bytes token id stands for (nil for a special token or
// an id out of range).
func (t *Tokenizer) Token(id int32) []byte {
	if id < 0 || int(id) >= NumBytes+len(t.merges) {
		return nil
	}
	return t.tokenBytes(id)
}

// Train learns vocabSize − 259 merges from the words of corpus (fewer when
// no pair is left that occurs MinPairCount times; see the package
// documentation for the rule). vocabSize must be at least 259.
func Train(corpus []string, vocabSize int) (*Tokenizer, error) {
	if vocabSize < NumBytes+NumSpecial {
		return nil, fmt.Errorf("bpe: vocabulary size %d, want at least %d (256 bytes and 3 special tokens)", vocabSize, NumBytes+NumSpecial)
	}
	tr := newTrainer(corpus)
	for len(tr.t.merges) < vocabSize-NumBytes-NumSpecial {
		p, ok := tr.best()
		if !ok {
			break
		}
		tr.merge(p)
	}
	return newTokenizer(tr.t.merges)
}

// trainer is the state of Train: the distinct words as token sequences with
// their counts, the count of every adjacent pair over them, the words each
// pair may occur in, and a max-heap of (count, pair) entries, stale ones
// dropped when popped.
type trainer struct {
	t      *Tokenizer
	words  [][]int32
	freq   []int
	counts map[pair]int
	where  map[pair][]int32
	h      pairHeap
	seen   []int // seen[w] == step: word w handled in this merge
	step   int
	dirty  map[pair]struct{}
}

func newTrainer(corpus []string) *trainer {
	t, _ := newTokenizer(nil) // the 256 byte tokens; cannot fail
	tr := &trainer{t: t, counts: map[pair]int{}, where: map[pair][]int32{}, dirty: map[pair]struct{}{}}
	index := map[string]int{}
	for _, s := range corpus {
		eachWord(s, func(w string) {
			i, ok := index[w]
			if !ok {
				i = len(tr.words)
				index[w] = i
				ids := make([]int32, len(w))
				for j := 0; j < len(w); j++ {
					ids[j] = int32(w[j])
				}
				tr.words = append(tr.words, ids)
				tr.freq = append(tr.freq, 0)
			}
			tr.freq[i]++
		})
	}
	tr.seen = make([]int, len(tr.words))
	for w := range tr.words {
		tr.addPairs(w, +1)
	}
	for p, c := range tr.counts {
		tr.h = append(tr.h, heapEntry{c, p})
	}
	heap.Init(&tr.h)
	clear(tr.dirty)
	return tr
}

// addPairs adds sign × the word's count to the count of each of its pairs.
func (tr *trainer) addPairs(w int, sign int) {
	ids := tr.words[w]
	for j := 0; j+1 < len(ids); j++ {
		p := pair{ids[j], ids[j+1]}
		tr.counts[p] += sign * tr.freq[w]
		if sign > 0 {
			tr.where[p] = append(tr.where[p], int32(w))
		}
		tr.dirty[p] = struct{}{}
	}
}

// best pops the pair to merge next: the highest count, ties to the
// smaller (a, b); ok is false when none is left at MinPairCount.
func (tr *trainer) best() (pair, bool) {
	for tr.h.Len() > 0 {
		e := tr.h[0]
		if c := tr.counts[e.p]; c != e.count || c < MinPairCount {
			heap.Pop(&tr.h) // stale: a fresher entry was pushed, or none is needed
			continue
		}
		if tr.t.tokenLen(e.p.a)+tr.t.tokenLen(e.p.b) > MaxTokenBytes {
			heap.Pop(&tr.h) // never mergeable: token lengths do not change
			continue
		}
		return e.p, true
	}
	return pair{}, false
}

// merge records p as the next merge and rewrites every word holding it.
func (tr *trainer) merge(p pair) {
	z := int32(tr.t.VocabSize() - NumSpecial)
	t, err := newTokenizerAppend(tr.t, p)
	if err != nil {
		panic(err) // best only returns valid pairs
	}
	tr.t = t
	tr.step++
	for _, w := range tr.where[p] {
		if tr.seen[w] == tr.step {
			continue
		}
		tr.seen[w] = tr.step
		if !contains(tr.words[w], p) {
			continue
		}
		tr.addPairs(int(w), -1)
		tr.words[w] = mergePair(tr.words[w], p, z)
		tr.addPairs(int(w), +1)
	}
	delete(tr.where, p)
	for q := range tr.dirty {
		if c := tr.counts[q]; c >= MinPairCount {
			heap.Push(&tr.h, heapEntry{c, q})
		} else if c == 0 {
			delete(tr.counts, q)
		}
	}
	clear(tr.dirty)
}

// newTokenizerAppend extends t's tables by one merge in place.
func newTokenizerAppend(t *Tokenizer, p pair) (*Tokenizer, error) {
	z := int32(NumBytes + len(t.merges))
	if _, dup := t.rank[p]; dup || p.a >= z || p.b >= z {
		return nil, fmt.Errorf("bpe: internal error: merge (%d, %d) is not new", p.a, p.b)
	}
	t.merges = append(t.merges, p)
	t.rank[p] = z
	t.bytes = append(t.bytes, t.tokenBytes(p.a)...)
	t.bytes = append(t.bytes, t.tokenBytes(p.b)...)
	t.off = append(t.off, int32(len(t.bytes)))
	return t, nil
}

func contains(ids []int32, p pair) bool {
	for j := 0; j+1 < len(ids); j++ {
		if ids[j] == p.a && ids[j+1] == p.b {
			return true
		}
	}
	return false
}

// mergePair replaces each occurrence of (a, b), left to right and without
// overlap, by z, in place.
func mergePair(ids []int32, p pair, z int32) []int32 {
	out := ids[:0]
	for j := 0; j < len(ids); j++ {
		if j+1 < len(ids) && ids[j] == p.a && ids[j+1] == p.b {
			out = append(out, z)
			j++
			continue
		}
		out = append(out, ids[j])
	}
	return out
}

type heapEntry struct {
	count int
	p     pair
}

// pairHeap orders entries by count, highest first, then by (a, b),
// smallest first: the tie rule of Train.
type pairHeap []heapEntry

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].count != h[j].count {
		return h[i].count > h[j].count
	}
	if h[i].p.a != h[j].p.a {
		return h[i].p.a < h[j].p.a
	}
	return h[i].p.b < h[j].p.b
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(heapEntry)) }
func (h *pairHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// class is the kind of character a word is a run of.
type class int

const (
	classSpace class = iota
	classLetter
	classDigit
	classOther
)

func classOf(r rune) class {
	switch {
	case unicode.IsSpace(r):
		return classSpace
	case unicode.IsLetter(r):
		return classLetter
	case unicode.IsNumber(r):
		return classDigit
	}
	return classOther // invalid UTF-8 (utf8.RuneError of width 1) included
}

// eachWord calls f with each word of s in order; the words partition s
// (see the package documentation).
func eachWord(s string, f func(w string)) {
	for i := 0; i < len(s); {
		start := i
		r, n := utf8.DecodeRuneInString(s[i:])
		c := classOf(r)
		if c == classSpace {
			j := i + n
			for j < len(s) {
				r2, n2 := utf8.DecodeRuneInString(s[j:])
				if classOf(r2) != classSpace {
					break
				}
				j += n2
			}
			// A single ' ' before a non-space joins the next word.
			if j < len(s) && s[j-1] == ' ' {
				if j-1 > i {
					f(s[i : j-1])
				}
				i = j - 1
				start = i
				r, n = ' ', 1
			} else {
				f(s[i:j])
				i = j
				continue
			}
		}
		i += n
		if r == ' ' { // the leading space: the run's class is the next rune's
			r, n = utf8.DecodeRuneInString(s[i:])
			c = classOf(r)
			i += n
		}
		for i < len(s) {
			r2, n2 := utf8.DecodeRuneInString(s[i:])
			if classOf(r2) != c {
				break
			}
			i += n2
		}
		f(s[start:i])
	}
}

// Tokens returns the BPE tokens of s, without special tokens.
func (t *Tokenizer) Tokens(s string) []int32 {
	return t.appendTokens(nil, s)
}

func (t *Tokenizer) appendTokens(dst []int32, s string) []int32 {
	eachWord(s, func(w string) {
		start := len(dst)
		for j := 0; j < len(w); j++ {
			dst = append(dst, int32(w[j]))
		}
		dst = dst[:start+len(t.mergeWord(dst[start:]))]
	})
	return dst
}

// mergeWord applies the merges to one word's tokens in place: while some
// adjacent pair is a merge, every occurrence of the one of lowest rank is
// joined.
func (t *Tokenizer) mergeWord(ids []int32) []int32 {
	for len(ids) > 1 {
		best, z := pair{}, int32(-1)
		for j := 0; j+1 < len(ids); j++ {
			p := pair{ids[j], ids[j+1]}
			if r, ok := t.rank[p]; ok && (z < 0 || r < z) {
				best, z = p, r
			}
		}
		if z < 0 {
			break
		}
		ids = mergePair(ids, best, z)
	}
	return ids
}

// Encode returns the contextLength ids of s framed for the text tower:
// SOT, the tokens of s, EOT, then Pad, the tokens cut so that EOT stays the
// last non-padding id; eot is EOT's index, where the tower pools.
// contextLength must be at least 2.
func (t *Tokenizer) Encode(s string, contextLength int) (ids []int32, eot int, err error) {
	if contextLength < 2 {
		return nil, 0, fmt.Errorf("bpe: context length %d, want at least 2 (SOT and EOT)", contextLength)
	}
	ids = make([]int32, 0, contextLength)
	ids = append(ids, t.SOT())
	ids = t.appendTokens(ids, s)
	if len(ids) > contextLength-1 {
		ids = ids[:contextLength-1]
	}
	eot = len(ids)
	ids = append(ids, t.EOT())
	for len(ids) < contextLength {
		ids = append(ids, t.Pad())
	}
	return ids, eot, nil
}

// Decode returns the text of ids: the bytes of each non-special token in
// order. An id outside [0, VocabSize) is an error.
func (t *Tokenizer) Decode(ids []int32) (string, error) {
	var b []byte
	for i, id := range ids {
		switch {
		case id < 0 || int(id) >= t.VocabSize():
			return "", fmt.Errorf("bpe: ids[%d] = %d out of range [0, %d)", i, id, t.VocabSize())
		case id >= t.SOT():
			continue
		}
		b = append(b, t.tokenBytes(id)...)
	}
	return string(b), nil
}

// magic opens the serialised form; its last byte is the format version.
const magic = "BPE\x01"

// MarshalBinary writes the magic, M and the M pairs as unsigned varints.
func (t *Tokenizer) MarshalBinary() ([]byte, error) {
	b := append([]byte(nil), magic...)
	b = binary.AppendUvarint(b, uint64(len(t.merges)))
	for _, p := range t.merges {
		b = binary.AppendUvarint(b, uint64(p.a))
		b = binary.AppendUvarint(b, uint64(p.b))
	}
	return b, nil
}

var errTruncated = errors.New("bpe: serialised tokenizer is truncated")

// UnmarshalBinary replaces t by the tokenizer of data, the form
// MarshalBinary writes; on error t is unchanged.
func (t *Tokenizer) UnmarshalBinary(data []byte) error {
	if len(data) < len(magic) || string(data[:len(magic)]) != magic {
		return errors.New("bpe: not a serialised tokenizer (bad magic or version)")
	}
	data = data[len(magic):]
	uvarint := func() (uint64, error) {
		v, n := binary.Uvarint(data)
		if n <= 0 {
			return 0, errTruncated
		}
		if n != len(binary.AppendUvarint(nil, v)) {
			return 0, errors.New("bpe: a varint of the serialised tokenizer is not in its shortest form")
		}
		data = data[n:]
		return v, nil
	}
	m, err := uvarint()
	if err != nil {
		return err
	}
	if m > uint64(len(data)/2) { // each pair takes at least two bytes
		return fmt.Errorf("bpe: %d merges in %d bytes", m, len(data))
	}
	merges := make([]pair, m)
	for k := range merges {
		a, err := uvarint()
		if err != nil {
			return err
		}
		b, err := uvarint()
		if err != nil {
			return err
		}
		if a >= uint64(NumBytes+k) || b >= uint64(NumBytes+k) {
			return fmt.Errorf("bpe: merge %d joins (%d, %d), want ids below %d", k, a, b, NumBytes+k)
		}
		merges[k] = pair{int32(a), int32(b)}
	}
	if len(data) != 0 {
		return fmt.Errorf("bpe: %d bytes after the last merge", len(data))
	}
	nt, err := newTokenizer(merges)
	if err != nil {
		return err
	}
	*t = *nt
	return nil
}

package dataset

import (
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Caption templates. {class} is the class name, {digit} the label as a
// number, {a} the article ("a" or "an") that goes before the class name.
var (
	digitTemplates = []string{
		"a photo of the digit {class}",
		"a handwritten {class}",
		"an image of the number {digit}",
		"a picture of a {class}",
		"the digit {class} written by hand",
		"a scan of a handwritten {digit}",
		"a black and white image of the digit {digit}",
		"the number {class} drawn with a pen",
	}
	classTemplates = []string{
		"a photo of {a} {class}",
		"an image of {a} {class}",
		"a picture of {a} {class}",
		"a small photo of {a} {class}",
		"a black and white photo of {a} {class}",
		"a low resolution image of {a} {class}",
	}
)

// Captioner makes the text side of an image–text pair: a caption of a class
// from one of a few templates. The set of captions is finite (classes ×
// templates), so each distinct caption text has an id; two samples of a
// batch with the same id are the same text, which the loss can mask as a
// false negative.
type Captioner struct {
	classes   int
	templates int
	text      []string // [class*templates + tmpl]
	id        []int32  // [class*templates + tmpl]
	corpus    []string // distinct texts, by id
}

// NewCaptioner returns the captioner of set. A set whose classes are the
// ten digit names "zero" … "nine" (MNIST) gets digit templates such as
// "a photo of the digit seven" and "an image of the number 7"; any other set
// gets generic ones such as "a photo of a cat".
func NewCaptioner(set *Set) *Captioner {
	templates := classTemplates
	if slices.Equal(set.Classes, digitNames) {
		templates = digitTemplates
	}
	c := &Captioner{
		classes:   len(set.Classes),
		templates: len(templates),
		text:      make([]string, len(set.Classes)*len(templates)),
		id:        make([]int32, len(set.Classes)*len(templates)),
	}
	ids := make(map[string]int32)
	for k, name := range set.Classes {
		for j, t := range templates {
			s := strings.NewReplacer("{class}", name, "{digit}", strconv.Itoa(k), "{a}", article(name)).Replace(t)
			id, ok := ids[s]
			if !ok {
				id = int32(len(c.corpus))
				ids[s] = id
				c.corpus = append(c.corpus, s)
			}
			c.text[k*c.templates+j] = s
			c.id[k*c.templates+j] = id
		}
	}
	return c
}

// article returns "an" before a word that starts with a vowel letter, "a"
// otherwise.
func article(word string) string {
	r, _ := utf8.DecodeRuneInString(word)
	if strings.ContainsRune("aeiouAEIOU", r) {
		return "an"
	}
	return "a"
}

// NumTemplates is the number of templates per class.
func (c *Captioner) NumTemplates() int { return c.templates }

// Text is the caption of class from template tmpl.
func (c *Captioner) Text(class, tmpl int) string { return c.text[class*c.templates+tmpl] }

// ID is the id of the caption text of (class, tmpl): equal ids mean equal
// texts. Ids run from 0 to len(Corpus())-1.
func (c *Captioner) ID(class, tmpl int) int32 { return c.id[class*c.templates+tmpl] }

// Pick chooses the template of a training sample, uniformly, as a pure
// function of (seed, epoch, sample): every rank picks the same caption for a
// sample, and the caption changes from epoch to epoch.
func (c *Captioner) Pick(seed uint64, epoch int, sample int) int {
	h, _ := hashKey(domainCaption, seed, uint64(epoch), uint64(sample))
	// Multiply-shift maps h to [0, templates); the bias is below 2^-50.
	return int((h >> 11) * uint64(c.templates) >> 53)
}

// Corpus returns every distinct caption text, indexed by ID.
func (c *Captioner) Corpus() []string { return slices.Clone(c.corpus) }

// Tokenizer maps text to word ids. Words are maximal runs of letters and
// digits, lower-cased; everything else (spaces, punctuation) separates
// them. The vocabulary is the sorted set of words of a corpus, with id 0
// reserved for words outside it, "[unk]".
type Tokenizer struct {
	words []string // words[id]; words[0] = "[unk]"
	ids   map[string]int32
	// buckets > 0 makes the tokenizer hashed: a word's id is
	// 1 + FNV-1a(word) mod (buckets−1), with no vocabulary to build.
	buckets int
}

// NewHashTokenizer is a tokenizer without a corpus: a word's id is
// 1 + FNV-1a(lower-cased word) mod (vocab−1), so that a streamed data set
// needs no pass over its captions, at the price of collisions between
// rare words. Id 0 stays "[unk]" (the empty word never occurs). vocab
// must be at least 2.
func NewHashTokenizer(vocab int) *Tokenizer {
	return &Tokenizer{words: []string{"[unk]"}, buckets: max(vocab, 2)}
}

// Unknown is the token id of a word not in the vocabulary.
const Unknown int32 = 0

// NewTokenizer builds the vocabulary of corpus.
func NewTokenizer(corpus []string) *Tokenizer {
	set := make(map[string]bool)
	for _, s := range corpus {
		eachWord(s, func(w string) { set[lowerWord(w)] = true })
	}
	words := make([]string, 0, len(set))
	for w := range set {
		words = append(words, w)
	}
	slices.Sort(words)
	t := &Tokenizer{words: append([]string{"[unk]"}, words...), ids: make(map[string]int32, len(words))}
	for i, w := range words {
		t.ids[w] = int32(i + 1)
	}
	return t
}

// Vocab is the number of token ids, [unk] included.
func (t *Tokenizer) Vocab() int {
	if t.buckets > 0 {
		return t.buckets
	}
	return len(t.words)
}

// Word is the word of token id (for display); "[unk]" for 0, and "#id"
// for the buckets of a hashed tokenizer.
func (t *Tokenizer) Word(id int32) string {
	if t.buckets > 0 && id > 0 {
		return "#" + strconv.Itoa(int(id))
	}
	return t.words[id]
}

// Encode appends the token ids of s to dst and returns it. It does not
// allocate when dst has room (words longer than 64 bytes that need
// lower-casing are the exception).
func (t *Tokenizer) Encode(s string, dst []int32) []int32 {
	if t.buckets > 0 {
		eachWord(s, func(w string) {
			// FNV-1a over the UTF-8 of the lower-cased runes.
			h := uint32(2166136261)
			var b [utf8.UTFMax]byte
			for _, r := range w {
				n := utf8.EncodeRune(b[:], unicode.ToLower(r))
				for _, c := range b[:n] {
					h = (h ^ uint32(c)) * 16777619
				}
			}
			dst = append(dst, int32(1+h%uint32(t.buckets-1)))
		})
		return dst
	}
	var buf [64]byte
	eachWord(s, func(w string) {
		id, ok := Unknown, false
		if isLower(w) {
			id, ok = t.ids[w]
		} else if len(w) <= len(buf) {
			b := buf[:0]
			for _, r := range w {
				b = utf8.AppendRune(b, unicode.ToLower(r))
			}
			id, ok = t.ids[string(b)] // no allocation: map lookup of a converted []byte
		} else {
			id, ok = t.ids[lowerWord(w)]
		}
		if !ok {
			id = Unknown
		}
		dst = append(dst, id)
	})
	return dst
}

// eachWord calls f with every maximal run of letters and digits in s.
func eachWord(s string, f func(string)) {
	start := -1
	for i, r := range s {
		in := unicode.IsLetter(r) || unicode.IsDigit(r)
		switch {
		case in && start < 0:
			start = i
		case !in && start >= 0:
			f(s[start:i])
			start = -1
		}
	}
	if start >= 0 {
		f(s[start:])
	}
}

// isLower reports whether lowerWord(w) == w.
func isLower(w string) bool {
	for _, r := range w {
		if unicode.ToLower(r) != r {
			return false
		}
	}
	return true
}

// lowerWord lower-cases w rune by rune (the same mapping Encode uses).
func lowerWord(w string) string {
	return strings.Map(unicode.ToLower, w)
}

package bpe

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// corpus is a small English corpus with repeated words, enough for a few
// hundred merges.
var corpus = []string{
	"a photo of the digit seven",
	"a handwritten seven",
	"an image of the number 7",
	"a picture of a cat",
	"the digit three written by hand",
	"a scan of a handwritten 3",
	"a black and white image of the digit one",
	"the number eight drawn with a pen",
	"a low resolution image of a dog, and another dog!",
	"photographs of photographers photographing photos",
	"  two  spaces\tand a tab\nand a newline",
}

func train(t testing.TB, c []string, vocab int) *Tokenizer {
	t.Helper()
	tok, err := Train(c, vocab)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"a photo of 12 cats!", []string{"a", " photo", " of", " 12", " cats", "!"}},
		{"  two", []string{" ", " two"}},
		{"x \t y", []string{"x", " \t", " y"}},
		{"end  ", []string{"end", "  "}},
		{"日本語 text", []string{"日本語", " text"}},
		{"it's", []string{"it", "'", "s"}},
		{"\xff\xfe ok", []string{"\xff\xfe", " ok"}},
		{"", nil},
	} {
		var got []string
		eachWord(tc.in, func(w string) { got = append(got, w) })
		if !slices.Equal(got, tc.want) {
			t.Errorf("words of %q = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestTrainKnownMerges checks the merges of two corpora by hand: the most
// frequent pair first, and the tie rule (smaller left id, then right id).
func TestTrainKnownMerges(t *testing.T) {
	// Words "ab", " ab", " ab", "abc": (a,b) occurs 4 times, then
	// (' ', ab) twice; (ab, c) once is below MinPairCount.
	tok := train(t, []string{"ab ab ab", "abc"}, 1000)
	if want := []pair{{'a', 'b'}, {' ', 256}}; !slices.Equal(tok.merges, want) {
		t.Errorf("merges %v, want %v", tok.merges, want)
	}
	if tok.VocabSize() != 256+2+3 || tok.SOT() != 258 || tok.EOT() != 259 || tok.Pad() != 260 {
		t.Errorf("vocabulary %d, SOT %d, EOT %d, Pad %d; want 261, 258, 259, 260", tok.VocabSize(), tok.SOT(), tok.EOT(), tok.Pad())
	}
	// (x,y) and (u,v) both occur twice: 'u' < 'x', so (u,v) goes first.
	tok = train(t, []string{"xy", "uv", "xy", "uv"}, 1000)
	if want := []pair{{'u', 'v'}, {'x', 'y'}}; !slices.Equal(tok.merges, want) {
		t.Errorf("tie: merges %v, want %v", tok.merges, want)
	}
	// The vocabulary size bounds the merges.
	tok = train(t, []string{"xy", "uv", "xy", "uv"}, 256+3+1)
	if want := []pair{{'u', 'v'}}; !slices.Equal(tok.merges, want) {
		t.Errorf("one merge: merges %v, want %v", tok.merges, want)
	}
	if _, err := Train(corpus, 258); err == nil {
		t.Error("a vocabulary of 258 (no room for the special tokens) was accepted")
	}
}

// TestTrainReproducible trains twice, once on a shuffled corpus: the same
// merges, byte for byte.
func TestTrainReproducible(t *testing.T) {
	a, err := train(t, corpus, 400).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	shuffled := slices.Clone(corpus)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	b, _ := train(t, shuffled, 400).MarshalBinary()
	if !bytes.Equal(a, b) {
		t.Error("training on the same words in another order gave other merges")
	}
}

// TestTrainMatchesNaive compares the incremental trainer with a direct one
// that recounts every pair of every word before each merge.
func TestTrainMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var c []string
	for range 200 {
		var sb strings.Builder
		for range 1 + rng.IntN(6) {
			sb.WriteString(" ")
			for range 1 + rng.IntN(7) {
				sb.WriteByte("abcde"[rng.IntN(5)])
			}
		}
		c = append(c, sb.String())
	}
	got := train(t, c, 256+3+60)
	// The direct trainer.
	var words [][]int32
	for _, s := range c {
		eachWord(s, func(w string) {
			ids := make([]int32, len(w))
			for j := range w {
				ids[j] = int32(w[j])
			}
			words = append(words, ids)
		})
	}
	var want []pair
	for len(want) < 60 {
		counts := map[pair]int{}
		for _, w := range words {
			for j := 0; j+1 < len(w); j++ {
				counts[pair{w[j], w[j+1]}]++
			}
		}
		best, bc := pair{}, 0
		for p, n := range counts {
			if n > bc || n == bc && (p.a < best.a || p.a == best.a && p.b < best.b) {
				best, bc = p, n
			}
		}
		if bc < MinPairCount {
			break
		}
		z := int32(NumBytes + len(want))
		want = append(want, best)
		for i := range words {
			words[i] = mergePair(words[i], best, z)
		}
	}
	if !slices.Equal(got.merges, want) {
		t.Errorf("incremental trainer's merges differ from the direct trainer's:\n%v\n%v", got.merges, want)
	}
}

func TestEncodeFrames(t *testing.T) {
	tok := train(t, corpus, 400)
	ids, eot, err := tok.Encode("a photo of the digit seven", 16)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 16 || ids[0] != tok.SOT() || ids[eot] != tok.EOT() {
		t.Fatalf("ids %v, eot %d: want 16 ids, SOT first and EOT at eot", ids, eot)
	}
	for _, id := range ids[eot+1:] {
		if id != tok.Pad() {
			t.Fatalf("ids %v: want Pad after EOT", ids)
		}
	}
	if eot-1 > 6 {
		t.Errorf("a training sentence of 6 words took %d tokens", eot-1)
	}
	if s, _ := tok.Decode(ids); s != "a photo of the digit seven" {
		t.Errorf("Decode(Encode) = %q", s)
	}
	// Truncation keeps EOT last.
	long := strings.Repeat("unseen words of no merge ", 20)
	ids, eot, err = tok.Encode(long, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 10 || eot != 9 || ids[9] != tok.EOT() || ids[0] != tok.SOT() {
		t.Errorf("truncated: ids %v, eot %d; want EOT at 9", ids, eot)
	}
	if s, _ := tok.Decode(ids); !strings.HasPrefix(long, s) || len(s) == 0 {
		t.Errorf("a truncated text decodes to %q, not a prefix of the text", s)
	}
	if _, _, err := tok.Encode("x", 1); err == nil {
		t.Error("a context length of 1 was accepted")
	}
	if _, err := tok.Decode([]int32{int32(tok.VocabSize())}); err == nil {
		t.Error("an id equal to VocabSize was decoded")
	}
}

// TestUnseenScriptsAreBytes checks that text of a script the corpus lacks
// encodes as its UTF-8 bytes, and that a word the corpus has encodes as one
// token.
func TestUnseenScriptsAreBytes(t *testing.T) {
	tok := train(t, corpus, 600)
	for _, s := range []string{"日本語", "Ωμέγα", "😀", "\xff\x00"} {
		got := tok.Tokens(s)
		want := make([]int32, len(s))
		for j := 0; j < len(s); j++ {
			want[j] = int32(s[j])
		}
		if !slices.Equal(got, want) {
			t.Errorf("Tokens(%q) = %v, want its bytes %v", s, got, want)
		}
	}
	if got := tok.Tokens(" photo"); len(got) != 1 || string(tok.Token(got[0])) != " photo" {
		t.Errorf("Tokens(\" photo\") = %v, want the one token \" photo\"", got)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	tok := train(t, corpus, 500)
	data, err := tok.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Tokenizer
	if err := back.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.merges, tok.merges) {
		t.Fatal("merges differ after a round trip")
	}
	for _, s := range corpus {
		if !slices.Equal(back.Tokens(s), tok.Tokens(s)) {
			t.Errorf("%q encodes differently after a round trip", s)
		}
	}
	for _, bad := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"magic", []byte("BPE\x02\x00")},
		{"truncated", data[:len(data)-1]},
		{"trailing", append(slices.Clone(data), 0)},
		{"forward reference", []byte("BPE\x01\x01\x80\x02\x00")},    // merge 0 names id 256
		{"repeated pair", []byte("BPE\x01\x02\x61\x62\x61\x62")},    // (a,b) twice
		{"too many", []byte("BPE\x01\xff\xff\xff\xff\x0f\x00\x00")}, // 2³²−1 merges in 2 bytes
	} {
		var t2 Tokenizer
		if err := t2.UnmarshalBinary(bad.data); err == nil {
			t.Errorf("%s: accepted", bad.name)
		}
	}
	// A chain (a,a), (256,256), … doubles the token length each merge.
	chain := []byte("BPE\x01\x07a\x61")
	for k := 1; k < 7; k++ {
		id := byte(NumBytes + k - 1 - 128) // 256+k−1 as a 2-byte uvarint: low 7 bits | 0x80, then 2
		chain = append(chain, id|0x80, 2, id|0x80, 2)
	}
	var t3 Tokenizer
	if err := t3.UnmarshalBinary(chain); err == nil || !strings.Contains(err.Error(), "bytes, more than") {
		t.Errorf("a 128-byte token was accepted (err %v)", err)
	}
}

// FuzzRoundTrip checks Decode(Tokens(s)) == s and Decode(Encode(s)) == s
// (when the context is long enough) for any string, and that every id is
// in range.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range append(slices.Clone(corpus), "", " ", "日本語 and 😀", "\xff\xfe\x00", "a  b\t\tc \n") {
		f.Add(s)
	}
	tok := train(f, corpus, 400)
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Tokens(s)
		for _, id := range ids {
			if id < 0 || id >= tok.SOT() {
				t.Fatalf("Tokens(%q) has id %d outside the non-special range", s, id)
			}
		}
		if got, err := tok.Decode(ids); err != nil || got != s {
			t.Fatalf("Decode(Tokens(%q)) = %q, %v", s, got, err)
		}
		framed, eot, err := tok.Encode(s, len(ids)+2+3)
		if err != nil {
			t.Fatal(err)
		}
		if eot != len(ids)+1 {
			t.Fatalf("Encode(%q): EOT at %d, want %d (no truncation)", s, eot, len(ids)+1)
		}
		if got, err := tok.Decode(framed); err != nil || got != s {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", s, got, err)
		}
		if utf8.ValidString(s) && len(ids) > len(s) {
			t.Fatalf("%q: %d tokens for %d bytes", s, len(ids), len(s))
		}
	})
}

// FuzzUnmarshal feeds arbitrary bytes to UnmarshalBinary: it returns an
// error or a tokenizer whose serialised form is the input and which
// encodes and decodes a text back to itself.
func FuzzUnmarshal(f *testing.F) {
	good, _ := train(f, corpus, 300).MarshalBinary()
	f.Add(good)
	f.Add([]byte("BPE\x01\x00"))
	f.Add([]byte("BPE\x01\x01\x61\x62"))
	f.Add([]byte("BPE\x01\x02\x61\x62\x80\x02\x80\x02"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var tok Tokenizer
		if err := tok.UnmarshalBinary(data); err != nil {
			return
		}
		again, err := tok.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted %x but writes it back as %x (%v)", data, again, err)
		}
		const s = "a photo of the digit seven, ab ab abc"
		if got, err := tok.Decode(tok.Tokens(s)); err != nil || got != s {
			t.Fatalf("Decode(Tokens(%q)) = %q, %v", s, got, err)
		}
	})
}

// BenchmarkTrain trains a vocabulary of 4096 on 200 000 words drawn from a
// Zipf distribution over 20 000 random lower-case words, and encodes them.
func BenchmarkTrain(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 5))
	words := make([]string, 20000)
	for i := range words {
		w := make([]byte, 2+rng.IntN(9))
		for j := range w {
			w[j] = byte('a' + rng.IntN(26))
		}
		words[i] = string(w)
	}
	z := rand.NewZipf(rng, 1.1, 1, uint64(len(words)-1))
	corpus := make([]string, 20000)
	for i := range corpus {
		var sb strings.Builder
		for range 10 {
			sb.WriteString(words[z.Uint64()])
			sb.WriteByte(' ')
		}
		corpus[i] = sb.String()
	}
	var tok *Tokenizer
	b.Run("train", func(b *testing.B) {
		for b.Loop() {
			tok = train(b, corpus, 4096)
		}
		b.ReportMetric(float64(tok.NumMerges()), "merges")
	})
	b.Run("encode", func(b *testing.B) {
		var n int
		for b.Loop() {
			n = 0
			for _, s := range corpus {
				n += len(tok.Tokens(s))
			}
		}
		b.ReportMetric(float64(n)/float64(len(corpus)*10), "tokens/word")
		b.ReportMetric(float64(len(corpus))*float64(b.N)/b.Elapsed().Seconds(), "texts/s")
	})
}

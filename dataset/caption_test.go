package dataset

import (
	"slices"
	"strings"
	"testing"
)

func TestCaptionerDigits(t *testing.T) {
	c := NewCaptioner(&Set{Name: "mnist", Classes: digitNames})
	if c.NumTemplates() < 5 {
		t.Fatalf("%d templates, want at least 5", c.NumTemplates())
	}
	texts := make(map[string]bool)
	for tmpl := range c.NumTemplates() {
		s := c.Text(7, tmpl)
		if !strings.Contains(s, "seven") && !strings.Contains(s, "7") {
			t.Errorf("caption %q of class 7 names neither seven nor 7", s)
		}
		if strings.ContainsAny(s, "{}") {
			t.Errorf("caption %q has an unfilled placeholder", s)
		}
		texts[s] = true
	}
	for _, want := range []string{"a photo of the digit seven", "an image of the number 7", "a handwritten seven"} {
		if !texts[want] {
			t.Errorf("no caption %q among %v", want, texts)
		}
	}
}

func TestCaptionerGeneric(t *testing.T) {
	c := NewCaptioner(&Set{Classes: []string{"cat", "owl"}})
	if got := c.Text(0, 0); got != "a photo of a cat" {
		t.Errorf("Text(0, 0) = %q", got)
	}
	if got := c.Text(1, 0); got != "a photo of an owl" {
		t.Errorf("Text(1, 0) = %q", got)
	}
}

func TestCaptionerIDs(t *testing.T) {
	// "shoe" under two labels is impossible for a loaded Set, but the
	// captioner must still give equal texts equal ids.
	for _, classes := range [][]string{digitNames, {"shoe", "bag", "shoe"}} {
		c := NewCaptioner(&Set{Classes: classes})
		corpus := c.Corpus()
		byText := make(map[string]int32)
		for k := range classes {
			for j := range c.NumTemplates() {
				s, id := c.Text(k, j), c.ID(k, j)
				if id < 0 || int(id) >= len(corpus) || corpus[id] != s {
					t.Fatalf("ID(%d, %d) = %d does not index %q in the corpus", k, j, id, s)
				}
				if prev, ok := byText[s]; ok && prev != id {
					t.Fatalf("text %q has ids %d and %d", s, prev, id)
				}
				byText[s] = id
			}
		}
		if len(byText) != len(corpus) {
			t.Fatalf("%d distinct texts, corpus of %d", len(byText), len(corpus))
		}
		corpus[0] = "changed"
		if c.Corpus()[0] == "changed" {
			t.Fatal("Corpus returns the captioner's own slice")
		}
	}
}

func TestCaptionerPick(t *testing.T) {
	c := NewCaptioner(&Set{Classes: digitNames})
	T := c.NumTemplates()
	counts := make([]int, T)
	const n = 8000
	for i := range n {
		j := c.Pick(42, 3, i)
		if j < 0 || j >= T {
			t.Fatalf("Pick = %d, want [0, %d)", j, T)
		}
		if j != c.Pick(42, 3, i) {
			t.Fatal("Pick is not a function of its arguments")
		}
		counts[j]++
	}
	for j, k := range counts {
		if k < n/T*8/10 || k > n/T*12/10 {
			t.Errorf("template %d picked %d times of %d", j, k, n)
		}
	}
	// Epoch and seed change the choice.
	same := 0
	for i := range 1000 {
		if c.Pick(42, 3, i) == c.Pick(42, 4, i) {
			same++
		}
		if c.Pick(42, 3, i) == c.Pick(43, 3, i) {
			same++
		}
	}
	if same > 2*1000/T*15/10 {
		t.Errorf("%d of 2000 picks unchanged by epoch or seed", same)
	}
}

func TestTokenizer(t *testing.T) {
	tok := NewTokenizer([]string{"A photo of the digit Seven.", "an image, of the number 7!"})
	want := []string{"[unk]", "7", "a", "an", "digit", "image", "number", "of", "photo", "seven", "the"}
	if tok.Vocab() != len(want) {
		t.Fatalf("Vocab() = %d, want %d", tok.Vocab(), len(want))
	}
	for i, w := range want {
		if tok.Word(int32(i)) != w {
			t.Fatalf("word %d = %q, want %q", i, tok.Word(int32(i)), w)
		}
	}
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"a photo of the digit seven", []string{"a", "photo", "of", "the", "digit", "seven"}},
		{"  THE Number: 7?? ", []string{"the", "number", "7"}},
		{"a photo of a zebra", []string{"a", "photo", "of", "a", "[unk]"}},
		{"seven-7", []string{"seven", "7"}},
		{"", nil},
		{"...", nil},
	} {
		var got []string
		for _, id := range tok.Encode(tc.in, nil) {
			got = append(got, tok.Word(id))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	// Appends to dst.
	if got := tok.Encode("seven", []int32{99}); len(got) != 2 || got[0] != 99 {
		t.Errorf("Encode does not append: %v", got)
	}
	// The vocabulary does not depend on the order of the corpus.
	tok2 := NewTokenizer([]string{"an image, of the number 7!", "A photo of the digit Seven."})
	for i := range tok.Vocab() {
		if tok.Word(int32(i)) != tok2.Word(int32(i)) {
			t.Fatal("vocabulary depends on corpus order")
		}
	}
}

func TestTokenizerEncodeNoAlloc(t *testing.T) {
	c := NewCaptioner(&Set{Classes: digitNames})
	tok := NewTokenizer(c.Corpus())
	dst := make([]int32, 0, 64)
	allocs := testing.AllocsPerRun(100, func() {
		dst = tok.Encode("A Photo of the Digit SEVEN, written by hand", dst[:0])
		dst = tok.Encode(c.Text(3, 2), dst[:0])
	})
	if allocs != 0 {
		t.Errorf("Encode allocates %.1f times per call", allocs)
	}
	for _, id := range tok.Encode(c.Text(3, 0), nil) {
		if id == Unknown {
			t.Errorf("a corpus caption has an unknown word: %q", c.Text(3, 0))
		}
	}
}

func TestHashTokenizer(t *testing.T) {
	tok := NewHashTokenizer(4096)
	if tok.Vocab() != 4096 {
		t.Fatalf("Vocab = %d", tok.Vocab())
	}
	a := tok.Encode("A photo of a Zebra!", nil)
	b := tok.Encode("a PHOTO of a zebra", nil)
	if len(a) != 5 || !slices.Equal(a, b) {
		t.Fatalf("case and punctuation must not change the ids: %v vs %v", a, b)
	}
	if a[0] != a[3] || a[0] == a[1] {
		t.Errorf("ids %v: the two a's must agree, and a must differ from photo", a)
	}
	for _, id := range tok.Encode("ünïcode wörds 東京 and digits 42", nil) {
		if id < 1 || id >= 4096 {
			t.Errorf("id %d outside [1, 4096)", id)
		}
	}
	dst := make([]int32, 0, 16)
	if n := testing.AllocsPerRun(10, func() { dst = tok.Encode("a photo of the digit seven", dst[:0]) }); n != 0 {
		t.Errorf("Encode allocates %v times", n)
	}
}

package bpe_test

import (
	"fmt"

	"github.com/infonce/infonce/dataset/bpe"
)

func Example() {
	tok, err := bpe.Train([]string{"a photo of a cat", "a photo of a dog", "a photo of the digit seven"}, 300)
	if err != nil {
		fmt.Println(err)
		return
	}
	ids, eot, _ := tok.Encode("a photo of a cat", 12)
	text, _ := tok.Decode(ids)
	fmt.Println(tok.NumMerges(), tok.VocabSize())
	fmt.Printf("%d tokens, EOT at %d: %q\n", len(ids), eot, text)
	for _, id := range ids[1:eot] {
		fmt.Printf("%q ", tok.Token(id))
	}
	fmt.Println()
	// Output:
	// 9 268
	// 12 tokens, EOT at 9: "a photo of a cat"
	// "a" " photo" " of" " a" " " "c" "a" "t"
}

package worker

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/bpe"
	"github.com/infonce/infonce/model"
)

// textTokenizer turns a caption into the token ids of one row of the text
// tower: the word ids of the bag-of-words tower (dataset.Tokenizer), or
// the framed BPE ids of the transformer tower (bpeRows).
type textTokenizer interface {
	Encode(s string, dst []int32) []int32
	Vocab() int
}

// bpeRows frames captions for the transformer text tower: SOT, the BPE
// tokens, EOT, cut to the context length with EOT kept; the tower pads the
// row and pools at its last id, EOT.
type bpeRows struct {
	tok     *bpe.Tokenizer
	context int
}

func (b bpeRows) Vocab() int { return b.tok.VocabSize() }

func (b bpeRows) Encode(s string, dst []int32) []int32 {
	ids, eot, err := b.tok.Encode(s, b.context)
	if err != nil {
		// Encode fails only for a context length under 2, which the
		// model's configuration refuses before a step runs.
		return append(dst, b.tok.SOT(), b.tok.EOT())
	}
	return append(dst, ids[:eot+1]...)
}

// blobTokenizer is the checkpoint blob of a BPE tokenizer.
const blobTokenizer = "tokenizer"

// maxTokenizerCorpus bounds how many captions of a source train a BPE
// tokenizer at the start of a run.
const maxTokenizerCorpus = 100000

// trainCorpus is the text a run's tokenizer is trained on (CaptionCorpus).
func (t *Trainer[T]) trainCorpus() ([]string, error) {
	if t.captioner != nil {
		return t.captioner.Corpus(), nil
	}
	return sourceCorpus(t.src)
}

// CaptionCorpus is the text the tokenizer of a run on data is trained on:
// the captions rendered from the classes of an idx set or a labelled
// folder, or the captions of the first samples of a source with free text.
func CaptionCorpus(data *Data) ([]string, error) {
	if data.Set != nil {
		return dataset.NewCaptioner(data.Set).Corpus(), nil
	}
	if c := captionerOf(data.Train); c != nil && len(classesOf(data.Train)) > 0 {
		return c.Corpus(), nil
	}
	return sourceCorpus(data.Train)
}

func sourceCorpus(src dataset.Source) ([]string, error) {
	n := min(src.Len(), maxTokenizerCorpus)
	corpus := make([]string, 0, n)
	var s dataset.Sample
	for i := range n {
		err := src.Sample(context.Background(), i, &s)
		if errors.Is(err, dataset.ErrBadSample) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("tokenizer corpus: sample %d: %w", i, err)
		}
		if s.Text != "" {
			corpus = append(corpus, s.Text)
		}
	}
	if len(corpus) == 0 {
		return nil, fmt.Errorf("tokenizer corpus: %s has no caption", src.Name())
	}
	return corpus, nil
}

// setBPE makes the text tokenizer a BPE one for the transformer tower:
// the --tokenizer file, or one trained on the run's captions with
// --vocab-size ids.
func (t *Trainer[T]) setBPE(mc *model.Config) error {
	var tok *bpe.Tokenizer
	if f := t.Cfg.Tokenizer; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("--tokenizer: %w", err)
		}
		tok = new(bpe.Tokenizer)
		if err := tok.UnmarshalBinary(b); err != nil {
			return fmt.Errorf("--tokenizer %s: %w", f, err)
		}
	} else {
		corpus, err := t.trainCorpus()
		if err != nil {
			return err
		}
		if tok, err = bpe.Train(corpus, t.Cfg.DataOptions.vocabSize()); err != nil {
			return fmt.Errorf("tokenizer: %w", err)
		}
	}
	t.bpe = tok
	// The context length the tower will have: the flag, or the model's
	// default for a text transformer.
	probe := *mc
	probe.TextVocab = max(probe.TextVocab, 1)
	ctx := probe.WithDefaults().Transformer.Context
	t.tokenizer = bpeRows{tok: tok, context: ctx}
	return nil
}

// restoreTokenizer makes the checkpoint's BPE tokenizer the run's, so
// that a resumed run, eval and embed read captions as training did.
func (t *Trainer[T]) restoreTokenizer(from string, blob func(string) ([]byte, error)) error {
	b, err := blob(blobTokenizer)
	if err != nil {
		return fmt.Errorf("state from %s: %w", from, err)
	}
	tok := new(bpe.Tokenizer)
	if err := tok.UnmarshalBinary(b); err != nil {
		return fmt.Errorf("state from %s: tokenizer: %w", from, err)
	}
	if tok.VocabSize() != t.Model.Cfg.TextVocab {
		return fmt.Errorf("state from %s: its tokenizer has %d ids, the text tower %d", from, tok.VocabSize(), t.Model.Cfg.TextVocab)
	}
	t.bpe = tok
	t.tokenizer = bpeRows{tok: tok, context: t.tokenizer.(bpeRows).context}
	if t.captioner != nil {
		t.cacheTemplateTokens(len(t.tokens) / t.captioner.NumTemplates())
	}
	return nil
}

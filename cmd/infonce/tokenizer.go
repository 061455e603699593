package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/infonce/infonce/dataset/bpe"
	"github.com/infonce/infonce/worker"
)

func init() {
	register("tokenizer", command{summary: "train a byte-level BPE tokenizer on a data set's captions: tokenizer train --data SOURCE --vocab N --out FILE", run: runTokenizer})
}

func runTokenizer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "train" {
		return usageError{errors.New("usage: infonce tokenizer train --data SOURCE --vocab N --out FILE")}
	}
	fs := flag.NewFlagSet("tokenizer train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := worker.DefaultConfig()
	fs.StringVar(&cfg.Data, "data", cfg.Data, "the data whose captions train the tokenizer (the forms of train --data)")
	fs.StringVar(&cfg.Classes, "classes", cfg.Classes, "class names of mnist and idx:DIR")
	dataFlags(fs, &cfg.DataOptions)
	vocab := fs.Int("vocab", 4096, "ids of the tokenizer: 256 bytes, the merges, and 3 special tokens")
	out := fs.String("out", "", "the tokenizer file to write (train --tokenizer reads it)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err}
	}
	if *out == "" {
		return usageError{errors.New("tokenizer train: --out FILE is required")}
	}
	data, err := worker.LoadData(cfg)
	if err != nil {
		return err
	}
	corpus, err := worker.CaptionCorpus(data)
	if err != nil {
		return err
	}
	tok, err := bpe.Train(corpus, *vocab)
	if err != nil {
		return fmt.Errorf("tokenizer train: %w", err)
	}
	b, err := tok.MarshalBinary()
	if err != nil {
		return fmt.Errorf("tokenizer train: %w", err)
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		return fmt.Errorf("tokenizer train: %w", err)
	}
	fmt.Fprintf(stdout, "%s: %d ids (%d merges) from %d captions of %s\n", *out, tok.VocabSize(), tok.NumMerges(), len(corpus), data.Name)
	return ctx.Err()
}

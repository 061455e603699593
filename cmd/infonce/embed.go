package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/dataset/npy"
	"github.com/infonce/infonce/worker"
)

func init() {
	register("embed", command{summary: "embed images or texts with a saved model: embed --checkpoint PATH (--images SOURCE | --text FILE) --out FILE.npy", run: runEmbed})
}

// embedLine is one line of the JSON Lines file beside an embed output:
// row Index of the .npy array and what it embeds.
type embedLine struct {
	Index  int    `json:"index"`
	Key    string `json:"key"`
	Sample *int   `json:"sample,omitempty"` // images: the sample's index in its source
	Line   int    `json:"line,omitempty"`   // texts: the line of the file, from 1
}

func runEmbed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("embed", flag.ContinueOnError)
	path := fs.String("checkpoint", "", "checkpoint directory (a step-… directory, a folder of checkpoints or a run directory: its newest)")
	images := fs.String("images", "", "images to embed: any data source (mnist, idx:DIR, folder:DIR, csv:FILE, wds:PATTERN, rlds:DIR, synthetic[:N]), through the run's evaluation view")
	test := fs.Bool("test", false, "with --images: the test split of mnist, idx:DIR and rlds:DIR")
	text := fs.String("text", "", "texts to embed: a file of one text a line")
	out := fs.String("out", "", "output .npy file (N × dim float32); the ids go to the same name with .jsonl")
	batch := fs.Int("batch", 256, "rows encoded at once")
	if _, err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *path == "" || *out == "" {
		return usageError{fmt.Errorf("--checkpoint and --out are required")}
	}
	if (*images == "") == (*text == "") {
		return usageError{fmt.Errorf("give one of --images and --text")}
	}
	if *batch <= 0 {
		return usageError{fmt.Errorf("--batch %d, want > 0", *batch)}
	}
	if !strings.HasSuffix(*out, ".npy") {
		return usageError{fmt.Errorf("--out %s: want a .npy file name", *out)}
	}
	dir, err := checkpoint.Locate(*path)
	if err != nil {
		return err
	}
	t, err := worker.LoadForEval(ctx, dir)
	if err != nil {
		return err
	}
	d := t.Model.Cfg.Dim
	var emb []float32
	var lines []embedLine
	if *images != "" {
		src, err := t.OpenImages(*images, *test)
		if err != nil {
			return err
		}
		var rows []worker.EmbedRow
		var bad int
		if emb, rows, bad, err = t.EmbedImages(ctx, src, *batch); err != nil {
			return err
		}
		if bad > 0 {
			fmt.Fprintf(stderr, "%s: %d bad samples left out\n", *images, bad)
		}
		for i, r := range rows {
			lines = append(lines, embedLine{Index: i, Key: r.Key, Sample: &r.Sample})
		}
	} else {
		texts, err := readLines(*text)
		if err != nil {
			return err
		}
		if emb, err = t.EmbedTexts(ctx, texts, *batch); err != nil {
			return err
		}
		for i, s := range texts {
			lines = append(lines, embedLine{Index: i, Key: s, Line: i + 1})
		}
	}
	n := len(lines)
	var arr bytes.Buffer
	if err := npy.Write(&arr, []int{n, d}, emb); err != nil {
		return fmt.Errorf("embed: %w", err)
	}
	var ids bytes.Buffer
	enc := json.NewEncoder(&ids)
	for _, l := range lines {
		if err := enc.Encode(l); err != nil {
			return fmt.Errorf("embed: %w", err)
		}
	}
	idsPath := strings.TrimSuffix(*out, ".npy") + ".jsonl"
	if err := writeFileAtomic(*out, arr.Bytes()); err != nil {
		return fmt.Errorf("embed: %w", err)
	}
	if err := writeFileAtomic(idsPath, ids.Bytes()); err != nil {
		return fmt.Errorf("embed: %w", err)
	}
	fmt.Fprintf(stdout, "%s: %d × %d embeddings; ids in %s\n", *out, n, d, idsPath)
	return nil
}

// readLines returns the lines of a text file, without their line ends.
func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--text: %w", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		lines = append(lines, strings.TrimSuffix(sc.Text(), "\r"))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--text %s: %w", path, err)
	}
	return lines, nil
}

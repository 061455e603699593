package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/infonce/infonce/dataset/synthvla"
)

// runSynthVLA is `infonce data synth-vla`: it writes the procedural
// tabletop data set of package dataset/synthvla.
func runSynthVLA(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("data synth-vla", flag.ContinueOnError)
	var o synthvla.Options
	fs.IntVar(&o.Episodes, "episodes", 0, "number of episodes of both splits together (required)")
	fs.StringVar(&o.Out, "out", "", "folder to write DIR/train, DIR/val, DIR/info.json and DIR/tasks.json to; the splits must not exist yet (required)")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of every random choice: the same seed writes the same bytes")
	fs.StringVar(&o.Format, "format", synthvla.FormatWDS, "wds (WebDataset tar shards) or rlds (TFRecord episodes with features.json)")
	fs.Float64Var(&o.ValFraction, "val-fraction", 0.1, "fraction of the episodes in the validation split, whose tasks involve held-out object–colour combinations (0: none)")
	fs.IntVar(&o.Size, "size", 64, "side of the square images in pixels")
	fs.IntVar(&o.EpisodesPerShard, "episodes-per-shard", 100, "episodes of one shard")
	fs.IntVar(&o.SceneVariants, "scene-variants", 1, "episodes per scene: each scene's episodes start from the same objects, poses and look with distinct tasks (1 to 8; above 1 the metadata names the scene)")
	fs.IntVar(&o.Workers, "workers", 0, "episodes generated in parallel (0: GOMAXPROCS); the output does not depend on it")
	quiet := fs.Bool("quiet", false, "log nothing but the summary")
	if _, err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if o.Episodes <= 0 || o.Out == "" {
		return usageError{fmt.Errorf("--episodes N (at least 1) and --out DIR are required")}
	}
	if o.ValFraction == 0 {
		o.ValFraction = -1 // Options reads 0 as its default
	}
	if !*quiet {
		o.Log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	start := time.Now()
	sum, err := synthvla.Generate(ctx, o)
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	total := 0
	for _, sp := range []synthvla.Split{synthvla.Train, synthvla.Val} {
		ss := sum.Splits[sp]
		if ss == nil {
			continue
		}
		total += ss.Episodes
		fmt.Fprintf(stdout, "%-5s %6d episodes %7d steps %4d shards  %s", sp, ss.Episodes, ss.Steps, ss.Shards, ss.Spec)
		if ss.OpenSplit != "" && ss.OpenSplit != "train" {
			fmt.Fprintf(stdout, " (split %q)", ss.OpenSplit)
		}
		fmt.Fprintln(stdout)
	}
	fmt.Fprintf(stdout, "held out of train: %v\n", sum.HeldOut)
	fmt.Fprintf(stdout, "wrote %d episodes in %.1fs (%.0f episodes/s)\n", total, secs, float64(total)/secs)
	return nil
}

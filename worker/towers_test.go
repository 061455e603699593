package worker

import (
	"context"
	"math"
	"testing"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/model"
)

// tinyTowers shapes the cnn, vit and transformer towers small enough for
// exact float64 tests on 28×28 images.
func tinyTowers(cfg Config, image, text string) Config {
	cfg.ImageTower, cfg.TextTower = image, text
	cfg.ViT = model.ViTConfig{Patch: 7, Width: 16, Depth: 1, Heads: 2}
	cfg.CNN = model.CNNConfig{Width: 4, Stages: 2, Blocks: 1, Groups: 2}
	cfg.TextTransformer = model.TransformerConfig{Context: 12, Width: 16, Depth: 1, Heads: 2}
	cfg.DataOptions.VocabSize = 300
	return cfg
}

// TestNewTowersDistributedEqualsSingleProcess is DESIGN's invariant for
// the cnn and vit image towers and the transformer text tower (with its
// BPE tokenizer): K ranks give the loss and gradient of one process.
func TestNewTowersDistributedEqualsSingleProcess(t *testing.T) {
	for _, tc := range []struct{ objective, image, text string }{
		{CLIP, model.TowerViT, model.TowerTransformer},
		{CLIP, model.TowerCNN, model.TowerBagOfWords},
		{SimCLR, model.TowerCNN, ""},
	} {
		t.Run(tc.objective+"/"+tc.image+"/"+tc.text, func(t *testing.T) {
			cfg := tinyTowers(smallConfig(t, tc.objective), tc.image, tc.text)
			cfg.Batch, cfg.LearnTemperature = 6, true
			one, want := stepOnRanks(t, cfg, 1, 2, func(*allreduce.Ring) Comm[float64] { return Single[float64]{} })
			got, loss := stepOnRanks(t, cfg, 3, 2, func(r *allreduce.Ring) Comm[float64] { return ring64{r} })
			for s := range want {
				if d := math.Abs(loss[s]-want[s]) / math.Abs(want[s]); d > 1e-10 {
					t.Errorf("step %d: loss %v, single process %v", s, loss[s], want[s])
				}
			}
			for k, tr := range got {
				if d := relDiff(tr.Model.P.G, one[0].Model.P.G); d > 1e-9 {
					t.Errorf("rank %d: gradient differs from the single process by %.2g relative", k, d)
				}
			}
			if got[0].Model.Image.Kind() != tc.image {
				t.Errorf("image tower %s, want %s", got[0].Model.Image.Kind(), tc.image)
			}
		})
	}
}

// TestTransformerTokenizerInCheckpoint: a run with the transformer text
// tower keeps its BPE tokenizer in its checkpoints, and a resumed run
// continues bit for bit.
func TestTransformerTokenizerInCheckpoint(t *testing.T) {
	set := smallMNIST(t, 512, 10)
	cfg := tinyTowers(smallConfig(t, CLIP), model.TowerMLP, model.TowerTransformer)
	whole, err := NewTrainer[float32](cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	defer whole.Close()
	if whole.bpe == nil || whole.Model.Cfg.TextVocab != whole.bpe.VocabSize() {
		t.Fatalf("no BPE tokenizer behind the transformer tower")
	}
	want := trainSteps(t, whole, 0, 4)
	first, _ := NewTrainer[float32](cfg, set)
	defer first.Close()
	got := trainSteps(t, first, 0, 2)
	if _, err := first.Save(context.Background(), 2, 0); err != nil {
		t.Fatal(err)
	}
	c, err := (&checkpoint.Store{Root: CheckpointDir(cfg.Out)}).LoadLatest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Blob(blobTokenizer); err != nil {
		t.Fatalf("the checkpoint holds no tokenizer: %v", err)
	}
	second, _ := NewTrainer[float32](cfg, set)
	defer second.Close()
	if _, err := second.Restore(c); err != nil {
		t.Fatal(err)
	}
	got = append(got, trainSteps(t, second, 2, 4)...)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("step %d: loss %v after resume, %v uninterrupted", i, got[i], want[i])
		}
	}
}

package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/infonce/infonce/worker"
)

// towerFlags binds the shapes of the cnn, vit and transformer towers; a
// zero value takes the model's default.
func towerFlags(fs *flag.FlagSet, cfg *worker.Config) {
	fs.IntVar(&cfg.ViT.Patch, "vit-patch", cfg.ViT.Patch, "vit: patch side P (0: the smallest P ≥ 4 dividing the image into at most 64 patches)")
	fs.IntVar(&cfg.ViT.Width, "vit-width", cfg.ViT.Width, "vit: token width (0: 64)")
	fs.IntVar(&cfg.ViT.Depth, "vit-depth", cfg.ViT.Depth, "vit: transformer blocks (0: 4)")
	fs.IntVar(&cfg.ViT.Heads, "vit-heads", cfg.ViT.Heads, "vit: attention heads (0: 4)")
	fs.Float64Var(&cfg.ViTMLPRatio, "vit-mlp-ratio", cfg.ViTMLPRatio, "vit: the blocks' MLP width as a multiple of the token width (0: 4)")
	fs.StringVar(&cfg.ViT.Pool, "vit-pool", cfg.ViT.Pool, "vit: cls (a class token) or mean")
	fs.IntVar(&cfg.CNN.Width, "cnn-width", cfg.CNN.Width, "cnn: channels of the stem and first stage (0: 16)")
	fs.IntVar(&cfg.CNN.Stages, "cnn-stages", cfg.CNN.Stages, "cnn: stages, each after the first halving H and W and doubling the channels (0: 3)")
	fs.IntVar(&cfg.CNN.Blocks, "cnn-blocks", cfg.CNN.Blocks, "cnn: residual blocks per stage (0: 1)")
	fs.IntVar(&cfg.CNN.Groups, "cnn-groups", cfg.CNN.Groups, "cnn: GroupNorm groups (0: min(8, width))")
	fs.IntVar(&cfg.TextTransformer.Width, "text-width", cfg.TextTransformer.Width, "transformer text tower: width (0: 64)")
	fs.IntVar(&cfg.TextTransformer.Depth, "text-depth", cfg.TextTransformer.Depth, "transformer text tower: blocks (0: 2)")
	fs.IntVar(&cfg.TextTransformer.Heads, "text-heads", cfg.TextTransformer.Heads, "transformer text tower: attention heads (0: 4)")
	fs.IntVar(&cfg.TextTransformer.Context, "context-length", cfg.TextTransformer.Context, "transformer text tower: tokens per caption, EOT included (0: 32)")
	fs.StringVar(&cfg.TextTransformer.Pool, "text-pool", cfg.TextTransformer.Pool, "transformer text tower: eot (the end-of-text token) or mean")
	fs.StringVar(&cfg.ActionTower, "action-tower", cfg.ActionTower, "action tower of objectives with actions (tri, vla): mlp, or temporal (1-D convolutions over the chunk's steps)")
	fs.Var((*intList)(&cfg.ActionHidden), "action-hidden", "widths of the action tower's hidden layers, comma-separated (default none: a linear map)")
	fs.IntVar(&cfg.ActionHorizon, "action-horizon", cfg.ActionHorizon, "steps H of the action chunk a sample is paired with (0: 8)")
	fs.IntVar(&cfg.ActionWidth, "action-width", cfg.ActionWidth, "temporal action tower: channels of its two convolutions (0: 32)")
	fs.IntVar(&cfg.ActionKernel, "action-kernel", cfg.ActionKernel, "temporal action tower: odd kernel size over time (0: 3)")
	fs.BoolVar(&cfg.ActionState, "action-state", cfg.ActionState, "add each sample's robot state (RLDS observation/state, wds state.npy), normalised like the actions, to the action tower's input")
	fs.Var((*floatTriple)(&cfg.TriWeights), "tri-weights", "tri: weights a,b,c of the image–text, image–action and text–action losses (default 1,1,1)")
	fs.IntVar(&cfg.FusionHidden, "fusion-hidden", cfg.FusionHidden, "vla: hidden width of the head that fuses the image and instruction embeddings (0: twice --dim)")
	fs.Float64Var(&cfg.SigLIPBiasInit, "siglip-bias-init", cfg.SigLIPBiasInit, "siglip: the initial logit bias b0 (0: −10)")
	fs.IntVar(&cfg.MaxPerEpisode, "max-per-episode", cfg.MaxPerEpisode, "at most this many samples of one episode in a global batch (0: no bound)")
	fs.BoolVar(&cfg.SceneNegatives, "scene-negatives", cfg.SceneNegatives, "put the samples of one scene's episodes (synth-vla --scene-variants) in the same global batch, as hard negatives; --max-per-episode, if set, still caps each episode")
	fs.IntVar(&cfg.TCNWindow, "tcn-window", cfg.TCNWindow, "tcn: the most steps apart two frames of a positive pair are (0: 4)")
	fs.Float64Var(&cfg.TCNWeight, "tcn-weight", cfg.TCNWeight, "clip: add this weight times the time-contrastive loss of frames of one episode (0: none)")
	fs.StringVar(&cfg.Tokenizer, "tokenizer", cfg.Tokenizer, "transformer text tower: a BPE tokenizer file (infonce tokenizer train); default: trained on the training captions")
}

// floatTriple is a flag of three comma-separated numbers.
type floatTriple [3]float64

func (p *floatTriple) String() string {
	if p == nil || *p == ([3]float64{}) {
		return ""
	}
	return fmt.Sprintf("%g,%g,%g", p[0], p[1], p[2])
}

func (p *floatTriple) Set(s string) error {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return fmt.Errorf("want three numbers a,b,c, got %q", s)
	}
	for i, f := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return err
		}
		p[i] = v
	}
	return nil
}

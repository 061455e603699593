package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/internal/safetensors"
	"github.com/infonce/infonce/model"
	"github.com/infonce/infonce/worker"
)

func init() {
	register("export", command{summary: "write a checkpoint's weights for PyTorch: export --checkpoint PATH --format safetensors --out FILE", run: runExport})
}

// Metadata keys of an exported safetensors file.
const (
	exportMetaModel = "model" // the model.Config, defaults filled in, as JSON
	exportMetaStep  = "step"  // the checkpoint's global step
	exportMetaSHA   = "param_sha256"
)

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	path := fs.String("checkpoint", "", "checkpoint directory (a step-… directory, a folder of checkpoints or a run directory: its newest)")
	format := fs.String("format", "safetensors", "output format: safetensors (tensor names of the PyTorch reference model's state_dict, bench/baselines/pytorch/towers.py)")
	out := fs.String("out", "", "output file")
	if _, err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *path == "" || *out == "" {
		return usageError{fmt.Errorf("--checkpoint and --out are required")}
	}
	if *format != "safetensors" {
		return usageError{fmt.Errorf("--format %q: the only format is safetensors", *format)}
	}
	cfg, w, meta, err := loadWeights(ctx, *path)
	if err != nil {
		return err
	}
	ts, err := exportTensors(cfg, w)
	if err != nil {
		return fmt.Errorf("export %s: %w", *path, err)
	}
	mc, err := json.Marshal(cfg.WithDefaults())
	if err != nil {
		return fmt.Errorf("export: model config: %w", err)
	}
	meta["format"] = "pt"
	meta[exportMetaModel] = string(mc)
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, ts, meta); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := writeFileAtomic(*out, buf.Bytes()); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fmt.Fprintf(stdout, "%s: %d tensors, %d parameters, %d bytes\n", *out, len(ts), len(w), buf.Len())
	return nil
}

// loadWeights reads the model configuration and the parameters of the
// checkpoint at path, with the step and parameter checksum as metadata.
// A checkpoint whose manifest records no model configuration (written
// before it did) is rebuilt through worker.LoadForEval.
func loadWeights(ctx context.Context, path string) (model.Config, []float32, map[string]string, error) {
	dir, err := checkpoint.Locate(path)
	if err != nil {
		return model.Config{}, nil, nil, err
	}
	c, err := checkpoint.Load(ctx, dir)
	if err != nil {
		return model.Config{}, nil, nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	meta := map[string]string{exportMetaStep: strconv.FormatInt(c.Manifest.Step, 10)}
	if s := c.Manifest.Extra["param_sha256"]; s != "" {
		meta[exportMetaSHA] = s
	}
	var cfg model.Config
	var w []float32
	if s, ok := c.Manifest.Extra[worker.ExtraModel]; ok {
		if err := json.Unmarshal([]byte(s), &cfg); err != nil {
			return model.Config{}, nil, nil, fmt.Errorf("checkpoint %s: model config: %w", dir, err)
		}
		b, err := c.Blob("params")
		if err != nil {
			return model.Config{}, nil, nil, err
		}
		if w, err = checkpoint.BytesFloat32(b); err != nil {
			return model.Config{}, nil, nil, fmt.Errorf("checkpoint %s: params: %w", dir, err)
		}
	} else {
		t, err := worker.LoadForEval(ctx, dir)
		if err != nil {
			return model.Config{}, nil, nil, err
		}
		cfg, w = t.Model.Cfg, t.Model.P.W
	}
	if err := cfg.Validate(); err != nil {
		return model.Config{}, nil, nil, fmt.Errorf("checkpoint %s: model config: %w", dir, err)
	}
	if n := cfg.NumParams(); n != len(w) {
		return model.Config{}, nil, nil, fmt.Errorf("checkpoint %s: %d parameters, its model config has %d", dir, len(w), n)
	}
	return cfg, w, meta, nil
}

// exportTensors cuts the flat parameter buffer w of cfg into the tensors of
// the PyTorch reference model's state_dict (model.Config.TorchStateDict).
func exportTensors(cfg model.Config, w []float32) ([]safetensors.Tensor, error) {
	sd, err := cfg.TorchStateDict()
	if err != nil {
		return nil, err
	}
	ts := make([]safetensors.Tensor, len(sd))
	for i, tt := range sd {
		s := tt.Segment
		if s.Off+s.Len > len(w) {
			return nil, fmt.Errorf("%s: segment [%d, %d) outside the %d parameters", tt.Name, s.Off, s.Off+s.Len, len(w))
		}
		ts[i] = safetensors.FromFloat32(tt.Name, tt.Shape, w[s.Off:s.Off+s.Len])
	}
	return ts, nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// folder and a rename, so that path is never a partial file.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

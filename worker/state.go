package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"
	"unsafe"

	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/gemm"
	"github.com/infonce/infonce/model"
	"github.com/infonce/infonce/rundir"
)

// Blob names of a training checkpoint.
const (
	blobParams  = "params"
	optimPrefix = "optim_"
)

// ExtraModel is the manifest's Extra key of the model's configuration (the
// towers' kinds and shapes, as JSON of model.Config): what eval, resume
// and checkpoint inspect rebuild the towers from.
const ExtraModel = "model"

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// CheckpointDir is where a run keeps its checkpoints.
func CheckpointDir(out string) string { return rundir.CheckpointDir(out) }

// Snapshot is the full training state after `done` completed steps: the
// parameters, the optimizer's moments, MoCo's key encoder and queue, and
// the sampler cursor (the next global step), everything a resumed run
// needs to continue bit for bit.
func (t *Trainer[T]) Snapshot(done int64, generation uint64) (checkpoint.Manifest, []checkpoint.Blob, error) {
	cfg, err := json.Marshal(t.Cfg)
	if err != nil {
		return checkpoint.Manifest{}, nil, fmt.Errorf("encode config: %w", err)
	}
	mc, err := json.Marshal(t.Model.Cfg)
	if err != nil {
		return checkpoint.Manifest{}, nil, fmt.Errorf("encode model config: %w", err)
	}
	epoch := 0
	if spe := t.Sampler.StepsPerEpoch(); spe > 0 {
		epoch = int(done / int64(spe))
	}
	m := checkpoint.Manifest{
		Step:          done,
		Epoch:         epoch,
		SamplerCursor: done,
		Generation:    generation,
		RunID:         t.Cfg.RunID,
		CreatedUnix:   float64(time.Now().UnixNano()) / 1e9,
		Config:        cfg,
		RNG:           map[string]uint64{"seed": t.Cfg.Seed},
		Extra: map[string]string{
			"optimizer_steps": fmt.Sprint(t.Opt.StepCount()),
			"param_sha256":    ParamSHA256(t.Model.P.W),
			ExtraModel:        string(mc),
		},
	}
	blobs := []checkpoint.Blob{{Name: blobParams, Data: floatBytes(t.Model.P.W)}}
	if t.bpe != nil {
		tok, err := t.bpe.MarshalBinary()
		if err != nil {
			return checkpoint.Manifest{}, nil, fmt.Errorf("encode tokenizer: %w", err)
		}
		blobs = append(blobs, checkpoint.Blob{Name: blobTokenizer, Data: tok})
	}
	for _, b := range t.Opt.State() {
		blobs = append(blobs, checkpoint.Blob{Name: optimPrefix + b.Name, Data: floatBytes(b.Data)})
	}
	if t.actions != nil {
		m.Extra[extraActionStats] = t.actions.statsJSON()
	}
	if o, ok := t.Obj.(Stateful[T]); ok {
		ob, extra := o.Snapshot()
		blobs = append(blobs, ob...)
		for k, v := range extra {
			m.Extra[k] = v
		}
	}
	return m, blobs, nil
}

// Restore loads a checkpoint into the trainer and returns the next step to
// run. The checkpoint must come from a run with the same model shape.
func (t *Trainer[T]) Restore(c *checkpoint.Checkpoint) (int64, error) {
	return t.restore(c.Dir, c.Manifest, c.Blob)
}

// restore loads a Snapshot, given as its manifest and a blob reader, and
// returns the next step to run. from names the source in errors.
//
// Beyond the checksums (which only say the bytes are those written), it
// checks what they mean before anything is loaded: the sampler cursor is
// the step, 0 ≤ step ≤ the run's total steps, the optimizer has taken at
// most that many steps, and every buffer has the size this model computes
// for it. A state whose parameters or optimizer buffers do not fit is
// refused before any of them is copied.
func (t *Trainer[T]) restore(from string, m checkpoint.Manifest, blob func(string) ([]byte, error)) (int64, error) {
	if m.Step < 0 || m.SamplerCursor != m.Step {
		return 0, fmt.Errorf("state from %s: sampler cursor %d and step %d disagree (a state after n steps samples step n next)", from, m.SamplerCursor, m.Step)
	}
	if total := t.TotalSteps(); m.Step > total {
		return 0, fmt.Errorf("state from %s has trained %d steps, more than this run's %d: give --steps at least %d (or the --epochs of that run) to continue it", from, m.Step, total, m.Step)
	}
	var optSteps int64
	if _, err := fmt.Sscan(m.Extra["optimizer_steps"], &optSteps); err != nil {
		return 0, fmt.Errorf("state from %s: optimizer_steps: %w", from, err)
	}
	if optSteps < 0 || optSteps > m.Step {
		return 0, fmt.Errorf("state from %s: the optimizer took %d steps in %d", from, optSteps, m.Step)
	}
	var saved Config
	if err := json.Unmarshal(m.Config, &saved); err != nil {
		return 0, fmt.Errorf("state from %s: config: %w", from, err)
	}
	if saved.Fingerprint() != t.Cfg.Fingerprint() {
		return 0, fmt.Errorf("state from %s was written by a different run (%s), this run is %s: resume with the same model, objective and batch, or start a new --out", from, saved.Fingerprint(), t.Cfg.Fingerprint())
	}
	if saved, ok := m.Extra[ExtraModel]; ok {
		var mc model.Config
		if err := json.Unmarshal([]byte(saved), &mc); err != nil {
			return 0, fmt.Errorf("state from %s: model config: %w", from, err)
		}
		// t0 is only the start of training: a resumed run keeps the t it
		// restores, whatever its --temperature.
		mc.InitLogitScale = t.Model.Cfg.InitLogitScale
		if !reflect.DeepEqual(mc, t.Model.Cfg) {
			return 0, fmt.Errorf("state from %s holds towers %s, this run builds %s: the data or the tower flags differ from the run that wrote it", from, saved, mustJSON(t.Model.Cfg))
		}
	}
	// Every size is checked before anything is copied, so that a state
	// that does not fit leaves the trainer as it was.
	if err := checkFloats(from, blob, blobParams, t.Model.P.W); err != nil {
		return 0, err
	}
	for _, b := range t.Opt.State() {
		if err := checkFloats(from, blob, optimPrefix+b.Name, b.Data); err != nil {
			return 0, err
		}
	}
	if t.bpe != nil {
		if err := t.restoreTokenizer(from, blob); err != nil {
			return 0, err
		}
	}
	if st, ok := m.Extra[extraActionStats]; ok && t.actions != nil {
		if err := t.actions.restoreStats(st); err != nil {
			return 0, fmt.Errorf("state from %s: %w", from, err)
		}
	}
	// The parameters are checked for finiteness in a scratch buffer, so
	// that a state of NaN never reaches the model.
	w := make([]T, len(t.Model.P.W))
	if err := loadFloats(from, blob, blobParams, w); err != nil {
		return 0, err
	}
	if !allFinite(w) {
		return 0, fmt.Errorf("state from %s holds non-finite parameters", from)
	}
	copy(t.Model.P.W, w)
	for _, b := range t.Opt.State() {
		if err := loadFloats(from, blob, optimPrefix+b.Name, b.Data); err != nil {
			return 0, err
		}
	}
	t.Opt.SetStep(optSteps)
	if o, ok := t.Obj.(Stateful[T]); ok {
		if err := o.Restore(from, blob, m.Extra); err != nil {
			return 0, err
		}
	}
	if !allFinite(t.Model.P.W) {
		return 0, fmt.Errorf("state from %s holds non-finite parameters", from)
	}
	return m.SamplerCursor, nil
}

// checkFloats checks that blob name holds exactly dst's bytes.
func checkFloats[T gemm.Float](from string, blob func(string) ([]byte, error), name string, dst []T) error {
	b, err := blob(name)
	if err != nil {
		return fmt.Errorf("state from %s: %w", from, err)
	}
	if want := len(floatBytes(dst)); len(b) != want {
		return fmt.Errorf("state from %s: %s holds %d bytes, this model needs %d: it comes from a model of another shape", from, name, len(b), want)
	}
	return nil
}

// stateBound is the most bytes an encoded Snapshot of this trainer can
// take (encodeState): the blobs this model computes, their headers, and a
// manifest of at most checkpoint.MaxManifestBytes. A state broadcast to
// this rank is refused beyond it before anything is allocated.
func (t *Trainer[T]) stateBound() uint64 {
	n := uint64(4 + checkpoint.MaxManifestBytes + 4)
	add := func(name string, bytes int) { n += uint64(2 + len(name) + 8 + bytes) }
	add(blobParams, len(floatBytes(t.Model.P.W)))
	for _, b := range t.Opt.State() {
		add(optimPrefix+b.Name, len(floatBytes(b.Data)))
	}
	if o, ok := t.Obj.(Stateful[T]); ok {
		blobs, _ := o.Snapshot()
		for _, b := range blobs {
			add(b.Name, len(b.Data))
		}
	}
	return n
}

func loadFloats[T gemm.Float](from string, blob func(string) ([]byte, error), name string, dst []T) error {
	b, err := blob(name)
	if err != nil {
		return fmt.Errorf("state from %s: %w", from, err)
	}
	want := len(floatBytes(dst))
	if len(b) != want {
		return fmt.Errorf("state from %s: %s holds %d bytes, this model needs %d: it comes from a model of another shape", from, name, len(b), want)
	}
	copy(floatBytes(dst), b)
	return nil
}

// SaveFinal writes the state after the last step into the run's checkpoint
// directory. Non-finite parameters are never written.
func (t *Trainer[T]) SaveFinal(ctx context.Context) error {
	_, err := t.Save(ctx, t.TotalSteps(), 0)
	return err
}

// Save writes a checkpoint of the state after `done` steps.
func (t *Trainer[T]) Save(ctx context.Context, done int64, generation uint64) (string, error) {
	if !allFinite(t.Model.P.W) {
		return "", fmt.Errorf("refusing to checkpoint step %d: the parameters are not finite", done)
	}
	if t.saveHook != nil {
		if err := t.saveHook(done); err != nil {
			return "", fmt.Errorf("checkpoint step %d: %w", done, err)
		}
	}
	m, blobs, err := t.Snapshot(done, generation)
	if err != nil {
		return "", err
	}
	st := &checkpoint.Store{Root: CheckpointDir(t.Cfg.Out), Keep: 3}
	dir, err := st.Save(ctx, m, blobs)
	if errors.Is(err, checkpoint.ErrExists) {
		// The step exists and names this run (Save refuses another
		// run's): a resumed run saving the step it started from.
		return dir, nil
	}
	if err != nil {
		return "", fmt.Errorf("checkpoint step %d: %w", done, err)
	}
	return dir, nil
}

// LoadForEval rebuilds a trainer from a checkpoint (its configuration and
// parameters) so that it can be evaluated. path is one checkpoint
// directory, or a directory of checkpoints whose newest good one is taken.
func LoadForEval(ctx context.Context, path string) (*Trainer[float32], error) {
	c, err := checkpoint.Open(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	var cfg Config
	if err := json.Unmarshal(c.Manifest.Config, &cfg); err != nil {
		return nil, fmt.Errorf("checkpoint %s: config: %w", path, err)
	}
	data, err := LoadData(cfg)
	if err != nil {
		return nil, err
	}
	t, err := NewTrainerData[float32](cfg, data, nil)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	if _, err := t.Restore(c); err != nil {
		return nil, err
	}
	return t, nil
}

// floatBytes views a float buffer as its bytes in host order (little-endian
// on every platform infonce builds for).
func floatBytes[T gemm.Float](x []T) []byte {
	if len(x) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(x))), len(x)*int(unsafe.Sizeof(x[0])))
}

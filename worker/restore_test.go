package worker

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/dataset"
)

// tinyTrainer is a trainer of a model small enough to fuzz its restore.
func tinyTrainer(t testing.TB) *Trainer[float32] {
	t.Helper()
	cfg := smallConfig(t, CLIP)
	cfg.Batch, cfg.ImageHidden, cfg.TextHidden, cfg.Dim, cfg.Steps = 16, []int{4}, 4, 4, 20
	// A synthetic set: decoding MNIST would dominate a fuzzing worker.
	im := func(n int) dataset.Images {
		im := dataset.Images{N: n, H: 8, W: 8, Pixels: make([]byte, n*64), Labels: make([]uint8, n)}
		for i := range im.Pixels {
			im.Pixels[i] = byte(i * 37)
		}
		for i := range im.Labels {
			im.Labels[i] = uint8(i % 10)
		}
		return im
	}
	set := &dataset.Set{Name: "tiny", Train: im(64), Test: im(16),
		Classes: []string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}}
	tr, err := NewTrainer[float32](cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

// stateOf is tr's Snapshot after done steps, changed by edit.
func stateOf(t testing.TB, tr *Trainer[float32], done int64, edit func(*checkpoint.Manifest, map[string][]byte)) (checkpoint.Manifest, func(string) ([]byte, error)) {
	t.Helper()
	m, blobs, err := tr.Snapshot(done, 1)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]byte{}
	for _, b := range blobs {
		byName[b.Name] = bytes.Clone(b.Data)
	}
	if edit != nil {
		edit(&m, byName)
	}
	return m, func(name string) ([]byte, error) {
		b, ok := byName[name]
		if !ok {
			return nil, checkpoint.ErrNoBlob
		}
		return b, nil
	}
}

// TestRestoreValidatesMeaning: a state whose bytes are intact but whose
// meaning does not fit this run is refused, naming what is wrong, and the
// parameters stay as they were.
func TestRestoreValidatesMeaning(t *testing.T) {
	tr := tinyTrainer(t)
	before := bytes.Clone(floatBytes(tr.Model.P.W))
	for _, tc := range []struct {
		name string
		done int64
		edit func(*checkpoint.Manifest, map[string][]byte)
		want string
	}{
		{"cursor ahead of the step", 5, func(m *checkpoint.Manifest, _ map[string][]byte) { m.SamplerCursor = 9 }, "sampler cursor 9 and step 5 disagree"},
		{"negative step", 0, func(m *checkpoint.Manifest, _ map[string][]byte) { m.Step, m.SamplerCursor = -3, -3 }, "disagree"},
		{"beyond the run's steps", 25, nil, "more than this run's 20"},
		{"optimizer ahead of the step", 5, func(m *checkpoint.Manifest, _ map[string][]byte) { m.Extra["optimizer_steps"] = "6" }, "the optimizer took 6 steps in 5"},
		{"negative optimizer steps", 5, func(m *checkpoint.Manifest, _ map[string][]byte) { m.Extra["optimizer_steps"] = "-1" }, "the optimizer took -1"},
		{"non-finite parameters", 5, func(_ *checkpoint.Manifest, b map[string][]byte) {
			copy(b[blobParams], floatBytes([]float32{float32(math.NaN())}))
		}, "non-finite parameters"},
		{"short optimizer state", 5, func(_ *checkpoint.Manifest, b map[string][]byte) {
			for k := range b {
				if strings.HasPrefix(k, optimPrefix) {
					b[k] = b[k][:len(b[k])-4]
				}
			}
		}, "another shape"},
	} {
		m, blob := stateOf(t, tr, tc.done, tc.edit)
		_, err := tr.restore("test", m, blob)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one naming %q", tc.name, err, tc.want)
		}
		if !bytes.Equal(floatBytes(tr.Model.P.W), before) {
			t.Fatalf("%s: a refused state changed the parameters", tc.name)
		}
	}
	m, blob := stateOf(t, tr, 7, nil)
	if next, err := tr.restore("test", m, blob); err != nil || next != 7 {
		t.Fatalf("a good state: next %d, %v", next, err)
	}
}

// TestStateBound: the broadcast state of this model fits the bound its
// receivers compute, and the bound is far below the old 4 GiB.
func TestStateBound(t *testing.T) {
	tr := tinyTrainer(t)
	m, blobs, err := tr.Snapshot(3, 1)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := encodeState(m, blobs)
	if err != nil {
		t.Fatal(err)
	}
	bound := tr.stateBound()
	if uint64(len(enc)) > bound || bound > uint64(len(enc))+checkpoint.MaxManifestBytes+64 {
		t.Errorf("state of %d bytes, bound %d", len(enc), bound)
	}
}

// FuzzRestore feeds mutated broadcast states (manifest and blobs) through
// decodeState and Trainer.restore: nothing panics, and a state that is
// taken leaves the trainer at a step of the run with finite parameters.
func FuzzRestore(f *testing.F) {
	tr := tinyTrainer(f)
	add := func(done int64, edit func(*checkpoint.Manifest, map[string][]byte)) {
		m, blob := stateOf(f, tr, done, edit)
		_, blobs, _ := tr.Snapshot(done, 1)
		for i := range blobs {
			blobs[i].Data, _ = blob(blobs[i].Name)
		}
		enc, err := encodeState(m, blobs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	add(0, nil)
	add(7, nil)
	add(5, func(m *checkpoint.Manifest, _ map[string][]byte) { m.SamplerCursor = 9 })
	add(25, nil)
	add(5, func(m *checkpoint.Manifest, b map[string][]byte) {
		w := b[blobParams]
		copy(w, floatBytes([]float32{float32(math.NaN())}))
	})
	f.Fuzz(func(t *testing.T, enc []byte) {
		m, blobs, err := decodeState(enc)
		if err != nil {
			return
		}
		next, err := tr.restore("fuzz", m, func(name string) ([]byte, error) {
			b, ok := blobs[name]
			if !ok {
				return nil, checkpoint.ErrNoBlob
			}
			return b, nil
		})
		if err != nil {
			return
		}
		if next < 0 || next > tr.TotalSteps() {
			t.Fatalf("restore took a state at step %d of %d", next, tr.TotalSteps())
		}
		if !allFinite(tr.Model.P.W) {
			t.Fatal("restore took non-finite parameters")
		}
	})
}

package rlds

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/tfrecord"
)

// fractalFeatures is the shape of the features.json of an Open
// X-Embodiment data set (RT-1's fractal20220817_data, abridged): the
// action is a dict of tensors, the instruction a string tensor under
// observation, and the image a jpeg.
const fractalFeatures = `{
  "pythonClassName": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
  "featuresDict": {"features": {
    "aspects": {"pythonClassName": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
      "featuresDict": {"features": {"success": {"pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
        "tensor": {"shape": {}, "dtype": "bool", "encoding": "none"}}}}},
    "steps": {"pythonClassName": "tensorflow_datasets.core.features.dataset_feature.Dataset",
      "sequence": {"feature": {"pythonClassName": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
        "featuresDict": {"features": {
          "action": {"pythonClassName": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
            "featuresDict": {"features": {
              "world_vector": {"pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
                "tensor": {"shape": {"dimensions": ["3"]}, "dtype": "float32", "encoding": "none"}},
              "gripper_closedness_action": {"pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
                "tensor": {"shape": {"dimensions": ["1"]}, "dtype": "float32", "encoding": "none"}},
              "terminate_episode": {"pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
                "tensor": {"shape": {"dimensions": ["3"]}, "dtype": "int32", "encoding": "none"}}
            }}},
          "is_first": {"pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
            "tensor": {"shape": {}, "dtype": "bool", "encoding": "none"}},
          "observation": {"pythonClassName": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
            "featuresDict": {"features": {
              "image": {"pythonClassName": "tensorflow_datasets.core.features.image_feature.Image",
                "image": {"shape": {"dimensions": ["256", "320", "3"]}, "dtype": "uint8", "encodingFormat": "jpeg"}},
              "natural_language_instruction": {"pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
                "tensor": {"shape": {}, "dtype": "string", "encoding": "none"}},
              "natural_language_embedding": {"pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
                "tensor": {"shape": {"dimensions": ["512"]}, "dtype": "float32", "encoding": "none"}}
            }}}
        }}}, "length": "-1"}}
  }}
}`

func TestParseFeaturesFractal(t *testing.T) {
	specs, err := ParseFeatures([]byte(fractalFeatures))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, s := range specs {
		paths = append(paths, s.Path)
	}
	want := []string{"aspects/success", "steps/action/gripper_closedness_action", "steps/action/terminate_episode", "steps/action/world_vector",
		"steps/is_first", "steps/observation/image", "steps/observation/natural_language_embedding", "steps/observation/natural_language_instruction"}
	if !slices.Equal(paths, want) {
		t.Fatalf("paths %q\nwant %q", paths, want)
	}
	im := specs[5]
	if im.Kind != KindImage || !slices.Equal(im.Shape, []int{256, 320, 3}) || im.Encoding != "jpeg" || !im.InSteps {
		t.Fatalf("image spec %+v", im)
	}
	if specs[0].InSteps || specs[7].Kind != KindText {
		t.Fatalf("aspects %+v, instruction %+v", specs[0], specs[7])
	}
	k, err := ResolveKeys(specs, dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if k.Image.Path != "steps/observation/image" || k.Instruction.Path != "steps/observation/natural_language_instruction" || len(k.Action) != 3 || k.State != nil {
		t.Fatalf("keys %+v", k)
	}
	if _, err := ResolveKeys(specs, dataset.OpenOptions{ImageKey: "observation/wrist_image"}); err == nil {
		t.Fatal("a missing image key resolved")
	}
	if _, err := ResolveKeys(specs, dataset.OpenOptions{ImageKey: "action/world_vector"}); err == nil {
		t.Fatal("a tensor resolved as the image")
	}
}

func TestParseFeaturesErrors(t *testing.T) {
	for name, s := range map[string]string{
		"not json": "{",
		"no dict":  `{"tensor": {"shape": {}}}`,
		"bad dim":  `{"featuresDict": {"features": {"a": {"tensor": {"shape": {"dimensions": ["x"]}}}}}}`,
		"no feats": `{"featuresDict": {}}`,
		"nested":   `{"featuresDict": {"features": {"s": {"sequence": {"feature": {"sequence": {"feature": {"text": {}}}}}}}}}`,
		"not obj":  `{"featuresDict": {"features": {"a": 3}}}`,
		"empty":    `{"featuresDict": {"features": {}}}`,
	} {
		if _, err := ParseFeatures([]byte(s)); !errors.Is(err, ErrFeatures) {
			t.Errorf("%s: %v, want ErrFeatures", name, err)
		}
	}
}

func pngOf(t testing.TB, v uint8) []byte {
	im := image.NewRGBA(image.Rect(0, 0, 4, 3))
	for i := range 12 {
		im.Set(i%4, i/4, color.RGBA{v, 0, 0, 255})
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, im); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeFolder writes an RLDS folder with episodes of the given lengths
// spread over shards; step t of episode e has image red = 10e+t, action
// (e, t), state (t, t, t) and instruction "task e". It returns the shard
// paths.
func writeFolder(t *testing.T, dir string, shards [][]int) []string {
	t.Helper()
	l := Layout{ImageH: 3, ImageW: 4, ImageC: 3, ImageFormat: "png", Action: 2, State: 3, Instruction: true}
	os.WriteFile(filepath.Join(dir, "features.json"), FeaturesJSON(l), 0o644)
	os.WriteFile(filepath.Join(dir, "dataset_info.json"), []byte(`{"name": "toy", "version": "1.0.0"}`), 0o644)
	var paths []string
	e := 0
	for si, lens := range shards {
		var buf bytes.Buffer
		w := tfrecord.NewWriter(&buf)
		for _, T := range lens {
			var steps []Step
			for st := range T {
				steps = append(steps, Step{
					Image: pngOf(t, uint8(10*e+st)), Instruction: fmt.Sprintf("task %d", e),
					Action: []float32{float32(e), float32(st)}, State: []float32{float32(st), float32(st), float32(st)},
				})
			}
			if err := w.Write(EpisodeExample(steps).Marshal()); err != nil {
				t.Fatal(err)
			}
			e++
		}
		p := filepath.Join(dir, fmt.Sprintf("toy-train.tfrecord-%05d-of-%05d", si, len(shards)))
		os.WriteFile(p, buf.Bytes(), 0o644)
		paths = append(paths, p)
	}
	return paths
}

func reason(err error) string {
	var bad *dataset.BadSample
	if errors.As(err, &bad) {
		return bad.Reason
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return ""
}

func TestSource(t *testing.T) {
	dir := t.TempDir()
	writeFolder(t, dir, [][]int{{3, 2}, {4}})
	src, err := Open(dir, dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if src.Len() != 9 || src.Episodes() != 3 || src.Name() != "rlds:toy (train)" {
		t.Fatalf("%s: %d steps of %d episodes", src.Name(), src.Len(), src.Episodes())
	}
	want := []dataset.Field{dataset.FieldImage, dataset.FieldText, dataset.FieldAction, dataset.FieldState, dataset.FieldEpisode}
	if !slices.Equal(src.Fields(), want) {
		t.Fatalf("fields %v", src.Fields())
	}
	ctx := context.Background()
	var s dataset.Sample
	// Read in a scrambled order: the cache must not mix episodes up.
	for _, i := range []int{8, 0, 4, 3, 7, 1, 5, 2, 6} {
		if err := src.Sample(ctx, i, &s); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		e, st, T := map[int][3]int{0: {0, 0, 3}, 1: {0, 1, 3}, 2: {0, 2, 3}, 3: {1, 0, 2}, 4: {1, 1, 2}, 5: {2, 0, 4}, 6: {2, 1, 4}, 7: {2, 2, 4}, 8: {2, 3, 4}}[i][0],
			map[int]int{0: 0, 1: 1, 2: 2, 3: 0, 4: 1, 5: 0, 6: 1, 7: 2, 8: 3}[i], map[int]int{0: 3, 1: 3, 2: 3, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 8: 4}[i]
		if s.Episode != int64(e) || s.Step != st || s.EpisodeLen != T || s.Text != fmt.Sprintf("task %d", e) ||
			!slices.Equal(s.Action, []float32{float32(e), float32(st)}) || !slices.Equal(s.ActionShape, []int{2}) ||
			!slices.Equal(s.State, []float32{float32(st), float32(st), float32(st)}) ||
			s.Image.W != 4 || s.Image.H != 3 || s.Image.Pix[0] != uint8(10*e+st) {
			t.Fatalf("step %d: episode %d step %d/%d %q %v %v red %d; want episode %d step %d/%d",
				i, s.Episode, s.Step, s.EpisodeLen, s.Text, s.Action, s.State, s.Image.Pix[0], e, st, T)
		}
	}
	// With room for 3 cached steps, episodes are dropped and read again.
	if src, err = Open(dir, dataset.OpenOptions{}); err != nil {
		t.Fatal(err)
	}
	src.limit = 3
	for _, i := range []int{8, 0, 4, 3, 7, 1, 5, 2, 6, 8, 0} {
		if err := src.Sample(ctx, i, &s); err != nil {
			t.Fatal(err)
		}
		if want := []uint8{0, 1, 2, 10, 11, 20, 21, 22, 23}[i]; s.Image.Pix[0] != want {
			t.Fatalf("step %d with a small cache: red %d, want %d", i, s.Image.Pix[0], want)
		}
		if src.cached > 4 || src.lru.Len() != len(src.layouts) {
			t.Fatalf("cache of %d steps in %d layouts (%d in the map), limit 3", src.cached, src.lru.Len(), len(src.layouts))
		}
	}
	// Only the action, by name.
	src, err = Open(dir, dataset.OpenOptions{ImageKey: "observation/image", Instruction: "language_instruction", State: "observation/state", ActionKey: "steps/action"})
	if err != nil || src.Len() != 9 {
		t.Fatalf("explicit keys: %v", err)
	}
	for _, idx := range []string{".idx"} {
		m, _ := filepath.Glob(filepath.Join(dir, "*"+idx))
		if len(m) != 2 {
			t.Fatalf("%d indexes beside the shards, want 2", len(m))
		}
	}
}

func TestBadRecords(t *testing.T) {
	dir := t.TempDir()
	paths := writeFolder(t, dir, [][]int{{2, 3, 2}})
	b, _ := os.ReadFile(paths[0])
	// Find the records, flip a data byte of the second, cut into the third.
	ents, err := ScanEpisodes(bytes.NewReader(b), mustKeys(t, dir))
	if err != nil || len(ents) != 3 {
		t.Fatalf("scan: %v %v", ents, err)
	}
	b[ents[1].Offset+12+5] ^= 0xff
	b = b[:ents[2].Offset+20]
	os.WriteFile(paths[0], b, 0o644)
	src, err := Open(dir, dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if src.Len() != 4 {
		t.Fatalf("%d samples, want 2 steps + 2 bad records", src.Len())
	}
	var s dataset.Sample
	for i, w := range []string{"", "", "crc-mismatch", "truncated-record"} {
		if got := reason(src.Sample(context.Background(), i, &s)); got != w {
			t.Errorf("sample %d: %q, want %q", i, got, w)
		}
	}
}

// TestBigEpisode reads an episode of more than a megabyte (the read path
// that grows its buffer) in a scrambled order, so that the image offsets
// of its layout are used.
func TestBigEpisode(t *testing.T) {
	dir := t.TempDir()
	l := Layout{ImageH: 128, ImageW: 128, ImageC: 3, ImageFormat: "png", Action: 1}
	os.WriteFile(filepath.Join(dir, "features.json"), FeaturesJSON(l), 0o644)
	r := rand.New(rand.NewPCG(3, 4))
	var steps []Step
	var want [][]byte
	for st := range 24 {
		im := image.NewRGBA(image.Rect(0, 0, 128, 128))
		for i := range im.Pix {
			im.Pix[i] = byte(r.Uint32())
			if i%4 == 3 {
				im.Pix[i] = 255
			}
		}
		var buf bytes.Buffer
		png.Encode(&buf, im)
		steps = append(steps, Step{Image: buf.Bytes(), Action: []float32{float32(st)}})
		want = append(want, im.Pix[:3])
	}
	var buf bytes.Buffer
	w := tfrecord.NewWriter(&buf)
	w.Write(EpisodeExample(steps).Marshal())
	if buf.Len() < 1<<20 {
		t.Fatalf("episode of %d bytes, want more than a megabyte", buf.Len())
	}
	os.WriteFile(filepath.Join(dir, "big-train.tfrecord-00000-of-00001"), buf.Bytes(), 0o644)
	src, err := Open(dir, dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var s dataset.Sample
	for _, i := range dataset.Permutation(7, 0, 24, nil) {
		if err := src.Sample(context.Background(), i, &s); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if !slices.Equal(s.Image.Pix[:3], want[i]) || s.Action[0] != float32(i) {
			t.Fatalf("step %d: pixel %v action %v, want %v %d", i, s.Image.Pix[:3], s.Action, want[i], i)
		}
	}
}

func mustKeys(t *testing.T, dir string) *Keys {
	b, _ := os.ReadFile(filepath.Join(dir, "features.json"))
	specs, err := ParseFeatures(b)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ResolveKeys(specs, dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &k
}

func TestBadSteps(t *testing.T) {
	dir := t.TempDir()
	paths := writeFolder(t, dir, [][]int{{1}})
	steps := []Step{
		{Image: []byte("not a png"), Instruction: "x", Action: []float32{1, 2}, State: []float32{0, 0, 0}},
		{Image: pngOf(t, 1), Instruction: "x", Action: []float32{float32(nanF()), 2}, State: []float32{0, 0, 0}},
	}
	var buf bytes.Buffer
	w := tfrecord.NewWriter(&buf)
	w.Write(EpisodeExample(steps).Marshal())
	ex := EpisodeExample(steps[1:])
	ex["steps/action"] = tfrecord.FloatFeature(1, 2, 3) // 3 values for 1 step of 2
	w.Write(ex.Marshal())
	w.Write([]byte{0x0a, 0x05}) // not an Example
	os.WriteFile(paths[0], buf.Bytes(), 0o644)
	src, err := Open(dir, dataset.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var s dataset.Sample
	for i, want := range []string{"corrupt-image", "non-finite-action", "bad-action", "bad-example"} {
		if got := reason(src.Sample(context.Background(), i, &s)); got != want {
			t.Errorf("sample %d: %q, want %q", i, got, want)
		}
	}
}

func nanF() float64 { var z float64; return z / z }

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, dataset.OpenOptions{}); err == nil || !strings.Contains(err.Error(), "features.json") {
		t.Errorf("no features.json: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "features.json"), FeaturesJSON(Layout{Action: 2}), 0o644)
	if _, err := Open(dir, dataset.OpenOptions{}); err == nil || !strings.Contains(err.Error(), "-train.tfrecord-") {
		t.Errorf("no shards: %v", err)
	}
	if _, err := Open(dir, dataset.OpenOptions{Test: true}); err == nil || !strings.Contains(err.Error(), `"test"`) {
		t.Errorf("no test shards: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "x-train.tfrecord-00000-of-00001"), nil, 0o644)
	if _, err := Open(dir, dataset.OpenOptions{}); err == nil || !strings.Contains(err.Error(), "no step") {
		t.Errorf("empty shard: %v", err)
	}
}

func FuzzParseFeatures(f *testing.F) {
	f.Add([]byte(fractalFeatures))
	f.Add(FeaturesJSON(Layout{ImageH: 8, ImageW: 8, ImageC: 3, ImageFormat: "png", Action: 7, State: 8, Instruction: true}))
	f.Add([]byte(`{"featuresDict": {"features": {"a": {"text": {}}}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		specs, err := ParseFeatures(b)
		if err != nil {
			if !errors.Is(err, ErrFeatures) {
				t.Fatalf("error %v does not wrap ErrFeatures", err)
			}
			return
		}
		for i, s := range specs {
			if i > 0 && specs[i-1].Path > s.Path {
				t.Fatalf("specs not sorted: %q before %q", specs[i-1].Path, s.Path)
			}
			for _, d := range s.Shape {
				if d < -1 {
					t.Fatalf("dimension %d in %q", d, s.Path)
				}
			}
		}
		ResolveKeys(specs, dataset.OpenOptions{}) // must not panic
	})
}

// BenchmarkStep reads steps of 16 episodes of 50 steps with 64×64 PNG
// images of 12 KB, in episode order and in a shuffled order, with the
// layouts of every episode known ("warm": a step is one read of its image
// and its decoding) and with the layouts dropped at every pass over the
// steps ("cold": each episode is read whole once per pass, as in the first
// epoch).
func BenchmarkStep(b *testing.B) {
	dir := b.TempDir()
	l := Layout{ImageH: 64, ImageW: 64, ImageC: 3, ImageFormat: "png", Action: 7, Instruction: true}
	os.WriteFile(filepath.Join(dir, "features.json"), FeaturesJSON(l), 0o644)
	im := image.NewRGBA(image.Rect(0, 0, 64, 64))
	r := rand.New(rand.NewPCG(1, 2)) // incompressible pixels: PNGs of ~16 KB
	for i := range im.Pix {
		im.Pix[i] = byte(r.Uint32())
		if i%4 == 3 {
			im.Pix[i] = 255
		}
	}
	var pbuf bytes.Buffer
	png.Encode(&pbuf, im)
	var buf bytes.Buffer
	w := tfrecord.NewWriter(&buf)
	for range 16 {
		steps := make([]Step, 50)
		for t := range steps {
			steps[t] = Step{Image: pbuf.Bytes(), Instruction: "stack the cups", Action: make([]float32, 7)}
		}
		w.Write(EpisodeExample(steps).Marshal())
	}
	os.WriteFile(filepath.Join(dir, "b-train.tfrecord-00000-of-00001"), buf.Bytes(), 0o644)
	b.Logf("%d bytes per episode, %d per image", buf.Len()/16, pbuf.Len())
	src, err := Open(dir, dataset.OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, order := range []string{"episode", "shuffled"} {
		idx := make([]int, src.Len())
		for i := range idx {
			idx[i] = i
		}
		if order == "shuffled" {
			idx = dataset.Permutation(1, 0, src.Len(), nil)
		}
		for _, cold := range []bool{false, true} {
			name := order + "/warm"
			if cold {
				name = order + "/cold"
			}
			b.Run(name, func(b *testing.B) {
				var s dataset.Sample
				i := 0
				for b.Loop() {
					if cold && i%len(idx) == 0 {
						src.mu.Lock()
						src.layouts, src.cached = map[int]*list.Element{}, 0
						src.lru.Init()
						src.mu.Unlock()
					}
					if err := src.Sample(ctx, idx[i%len(idx)], &s); err != nil {
						b.Fatal(err)
					}
					i++
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "steps/s")
			})
		}
	}
}

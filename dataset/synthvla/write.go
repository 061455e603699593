package synthvla

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/npy"
	"github.com/infonce/infonce/dataset/rlds"
	"github.com/infonce/infonce/dataset/tfrecord"
)

// Formats of Generate's output.
const (
	FormatWDS  = "wds"
	FormatRLDS = "rlds"
)

// Options are the settings of Generate. Episodes and Out are required;
// every other field has a default, given with it.
type Options struct {
	// Episodes is the number of episodes of both splits together.
	Episodes int
	// Out is the folder the splits are written to, Out/train and Out/val;
	// neither may exist yet.
	Out string
	// Seed keys every random choice: the same seed gives the same bytes.
	Seed uint64
	// Format is FormatWDS (default) or FormatRLDS.
	Format string
	// ValFraction is the fraction of the episodes in the validation split,
	// rounded to the nearest episode (default 0.1; a negative value means
	// none).
	ValFraction float64
	// Size is the side of the square images (default 64).
	Size int
	// EpisodesPerShard is the number of episodes of a shard (default 100).
	EpisodesPerShard int
	// SceneVariants is the number of episodes written per scene (default
	// 1, at most MaxVariants): episode i of a split is variant i mod V of
	// scene ⌊i/V⌋ (NewSceneEpisode), the last scene of a split having
	// fewer when V does not divide its count. With V > 1 every step's
	// metadata names its scene.
	SceneVariants int
	// Workers generate episodes in parallel (default GOMAXPROCS); the
	// output does not depend on their number.
	Workers int
	// Log receives a line per shard written (default: none).
	Log *slog.Logger
}

func (o *Options) defaults() error {
	if o.Episodes <= 0 {
		return fmt.Errorf("synthvla: %d episodes: want at least 1", o.Episodes)
	}
	if o.Out == "" {
		return errors.New("synthvla: no output folder")
	}
	switch o.Format {
	case "":
		o.Format = FormatWDS
	case FormatWDS, FormatRLDS:
	default:
		return fmt.Errorf("synthvla: format %q: want %s or %s", o.Format, FormatWDS, FormatRLDS)
	}
	switch {
	case o.ValFraction == 0:
		o.ValFraction = 0.1
	case o.ValFraction < 0:
		o.ValFraction = 0
	case o.ValFraction >= 1 || math.IsNaN(o.ValFraction):
		return fmt.Errorf("synthvla: validation fraction %g: want one in [0, 1)", o.ValFraction)
	}
	if o.Size == 0 {
		o.Size = 64
	}
	if o.Size < 8 || o.Size > 1024 {
		return fmt.Errorf("synthvla: image side %d: want 8 to 1024", o.Size)
	}
	if o.EpisodesPerShard == 0 {
		o.EpisodesPerShard = 100
	}
	if o.EpisodesPerShard < 0 {
		return fmt.Errorf("synthvla: %d episodes per shard: want at least 1", o.EpisodesPerShard)
	}
	if o.SceneVariants == 0 {
		o.SceneVariants = 1
	}
	if o.SceneVariants < 1 || o.SceneVariants > MaxVariants {
		return fmt.Errorf("synthvla: %d scene variants: want 1 to %d", o.SceneVariants, MaxVariants)
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// SplitSummary describes one split written by Generate.
type SplitSummary struct {
	Episodes int    `json:"episodes"`
	Steps    int    `json:"steps"`
	Shards   int    `json:"shards"`
	Spec     string `json:"spec"` // what dataset.Open reads it as
	Dir      string `json:"dir"`
	// OpenSplit is the dataset.OpenOptions.Split an RLDS folder is read
	// with (empty for WebDataset shards).
	OpenSplit string `json:"open_split,omitempty"`
}

// Summary describes what Generate wrote; it is also Out/info.json, with
// the specs and folders relative to Out.
type Summary struct {
	Name     string                  `json:"name"`
	Format   string                  `json:"format"`
	Seed     uint64                  `json:"seed"`
	Size     int                     `json:"image_size"`
	Families []string                `json:"families"`
	Shapes   []string                `json:"shapes"`
	Colours  []string                `json:"colours"`
	HeldOut  []string                `json:"held_out"`
	Splits   map[Split]*SplitSummary `json:"splits"`
}

// Generate writes opts.Episodes episodes to opts.Out: the training split
// to Out/train and the validation split, ⌊ValFraction·Episodes⌉ episodes
// that each involve a HeldOut combination, to Out/val, as WebDataset
// shards or RLDS folders, and Out/info.json. Episode i of a split is
// NewEpisode(Seed, split, i, Size), so the output is a function of the
// options (not of Workers). The context stops it between episodes.
func Generate(ctx context.Context, opts Options) (Summary, error) {
	if err := opts.defaults(); err != nil {
		return Summary{}, err
	}
	nVal := int(math.Round(opts.ValFraction * float64(opts.Episodes)))
	counts := map[Split]int{Train: opts.Episodes - nVal, Val: nVal}
	sum := Summary{Name: "synth-vla", Format: opts.Format, Seed: opts.Seed, Size: opts.Size,
		Families: Families(), Shapes: shapeNames[:], Colours: colourNames[:], Splits: map[Split]*SplitSummary{}}
	for _, h := range HeldOut {
		sum.HeldOut = append(sum.HeldOut, h.String())
	}
	for _, sp := range []Split{Train, Val} {
		dir := filepath.Join(opts.Out, string(sp))
		if _, err := os.Stat(dir); err == nil {
			return sum, fmt.Errorf("synthvla: %s exists: write to a new folder", dir)
		}
	}
	for _, sp := range []Split{Train, Val} {
		if counts[sp] == 0 {
			continue
		}
		ss, err := writeSplit(ctx, opts, sp, counts[sp])
		if err != nil {
			return sum, err
		}
		sum.Splits[sp] = ss
	}
	// info.json names the splits relative to its folder, so that the
	// folder can move and equal options give equal bytes.
	rel := sum
	rel.Splits = map[Split]*SplitSummary{}
	for sp, ss := range sum.Splits {
		c := *ss
		scheme, path, _ := strings.Cut(c.Spec, ":")
		if r, err := filepath.Rel(opts.Out, path); err == nil {
			c.Spec = scheme + ":" + filepath.ToSlash(r)
		}
		c.Dir = string(sp)
		rel.Splits[sp] = &c
	}
	b, err := json.MarshalIndent(rel, "", "  ")
	if err != nil {
		return sum, fmt.Errorf("synthvla: %w", err)
	}
	if err := os.WriteFile(filepath.Join(opts.Out, "info.json"), append(b, '\n'), 0o644); err != nil {
		return sum, fmt.Errorf("synthvla: %w", err)
	}
	if err := dataset.WriteTaskFamilies(filepath.Join(opts.Out, dataset.TasksFile), TaskFamilies()); err != nil {
		return sum, fmt.Errorf("synthvla: %w", err)
	}
	return sum, nil
}

// encoded is an episode ready to write: the members of its steps (wds) or
// its record (rlds).
type encoded struct {
	steps   int
	members []member
	record  []byte
	err     error
}

type member struct {
	name string
	data []byte
}

// writeSplit generates and writes the n episodes of split sp. Workers
// encode episodes in parallel; the writer takes them in order, at most
// 2·Workers ahead.
func writeSplit(ctx context.Context, opts Options, sp Split, n int) (*SplitSummary, error) {
	dir := filepath.Join(opts.Out, string(sp))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("synthvla: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	window := 2 * opts.Workers
	slots := make([]chan encoded, window)
	for i := range slots {
		slots[i] = make(chan encoded, 1)
	}
	tokens := make(chan struct{}, window)
	jobs := make(chan int)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the feeder: index i is handed out once a slot is free
		defer wg.Done()
		defer close(jobs)
		for i := range n {
			select {
			case tokens <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				slots[i%window] <- encodeEpisode(opts, sp, i)
			}
		}()
	}
	defer wg.Wait()
	defer cancel() // runs before wg.Wait: stops the feeder and so the workers

	ss := &SplitSummary{Episodes: n, Dir: dir}
	shards := (n + opts.EpisodesPerShard - 1) / opts.EpisodesPerShard
	ss.Shards = shards
	var sw shardWriter
	for i := range n {
		var e encoded
		select {
		case e = <-slots[i%window]:
		case <-ctx.Done():
			sw.abort()
			return nil, ctx.Err()
		}
		<-tokens
		if e.err != nil {
			sw.abort()
			return nil, e.err
		}
		if i%opts.EpisodesPerShard == 0 {
			if err := sw.close(); err != nil {
				return nil, err
			}
			if err := sw.open(shardPath(opts, dir, sp, i/opts.EpisodesPerShard, shards), opts.Format); err != nil {
				return nil, err
			}
		}
		if err := sw.write(e); err != nil {
			sw.abort()
			return nil, err
		}
		ss.Steps += e.steps
		if i%opts.EpisodesPerShard == opts.EpisodesPerShard-1 || i == n-1 {
			opts.Log.Info("synth-vla shard", "split", sp, "path", sw.path, "episodes_so_far", i+1, "steps_so_far", ss.Steps)
		}
	}
	if err := sw.close(); err != nil {
		return nil, err
	}
	switch opts.Format {
	case FormatWDS:
		ss.Spec = "wds:" + filepath.Join(dir, "shard-000000.tar")
		if shards > 1 {
			ss.Spec = fmt.Sprintf("wds:%s/shard-{000000..%06d}.tar", dir, shards-1)
		}
	case FormatRLDS:
		ss.Spec, ss.OpenSplit = "rlds:"+dir, string(sp)
		if err := writeRLDSInfo(opts, dir, sp, shards); err != nil {
			return nil, err
		}
	}
	return ss, nil
}

func shardPath(opts Options, dir string, sp Split, i, n int) string {
	if opts.Format == FormatRLDS {
		return filepath.Join(dir, fmt.Sprintf("synth_vla-%s.tfrecord-%05d-of-%05d", sp, i, n))
	}
	return filepath.Join(dir, fmt.Sprintf("shard-%06d.tar", i))
}

// shardWriter writes one shard at a time: a tar of members, or a TFRecord
// file of records.
type shardWriter struct {
	path string
	f    *os.File
	bw   *bufio.Writer
	tw   *tar.Writer
	rw   *tfrecord.Writer
}

func (w *shardWriter) open(path, format string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("synthvla: %w", err)
	}
	w.path, w.f, w.bw = path, f, bufio.NewWriterSize(f, 1<<20)
	if format == FormatRLDS {
		w.rw = tfrecord.NewWriter(w.bw)
	} else {
		w.tw = tar.NewWriter(w.bw)
	}
	return nil
}

func (w *shardWriter) write(e encoded) error {
	if w.rw != nil {
		if err := w.rw.Write(e.record); err != nil {
			return fmt.Errorf("synthvla: %s: %w", w.path, err)
		}
		return nil
	}
	for _, m := range e.members {
		// A fixed header (no time, owner or mode beyond 0644), so that the
		// bytes depend on the content alone.
		h := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0), Format: tar.FormatUSTAR}
		if err := w.tw.WriteHeader(h); err != nil {
			return fmt.Errorf("synthvla: %s: %w", w.path, err)
		}
		if _, err := w.tw.Write(m.data); err != nil {
			return fmt.Errorf("synthvla: %s: %w", w.path, err)
		}
	}
	return nil
}

func (w *shardWriter) close() error {
	if w.f == nil {
		return nil
	}
	var errs []error
	if w.tw != nil {
		errs = append(errs, w.tw.Close())
	}
	errs = append(errs, w.bw.Flush(), w.f.Close())
	w.f, w.tw, w.rw = nil, nil, nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("synthvla: %s: %w", w.path, err)
	}
	return nil
}

// abort closes a shard that will not be finished.
func (w *shardWriter) abort() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}

// encodeEpisode generates episode i of sp and encodes it for the format.
func encodeEpisode(opts Options, sp Split, i int) encoded {
	v := opts.SceneVariants
	e, err := NewSceneEpisode(opts.Seed, sp, i/v, i%v, v, opts.Size)
	if err != nil {
		return encoded{err: err}
	}
	out := encoded{steps: len(e.Frames)}
	pngs := make([][]byte, len(e.Frames))
	for t := range e.Frames {
		if pngs[t], err = EncodePNG(e.Frames[t].Image, e.Size); err != nil {
			return encoded{err: err}
		}
	}
	if opts.Format == FormatRLDS {
		out.record = EpisodeRecord(e, pngs).Marshal()
		return out
	}
	for t := range e.Frames {
		f := &e.Frames[t]
		key := fmt.Sprintf("%06d_%03d", e.Index, t)
		var act, st bytes.Buffer
		p := f.Proprio()
		if err := npy.Write(&act, []int{7}, f.Action[:]); err != nil {
			return encoded{err: err}
		}
		if err := npy.Write(&st, []int{5}, p[:]); err != nil {
			return encoded{err: err}
		}
		meta, err := json.Marshal(StepMeta(e, t))
		if err != nil {
			return encoded{err: fmt.Errorf("synthvla: %w", err)}
		}
		out.members = append(out.members,
			member{key + ".png", pngs[t]},
			member{key + ".txt", []byte(e.Instruction)},
			member{key + ".action.npy", act.Bytes()},
			member{key + ".state.npy", st.Bytes()},
			member{key + ".json", meta})
	}
	return out
}

// pngPool keeps the PNG encoders' buffers (a deflate state each) between
// images.
type pngPool struct{ p sync.Pool }

func (p *pngPool) Get() *png.EncoderBuffer {
	b, _ := p.p.Get().(*png.EncoderBuffer)
	return b
}

func (p *pngPool) Put(b *png.EncoderBuffer) { p.p.Put(b) }

var pngEncoder = png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &pngPool{}}

// EncodePNG encodes an S×S RGB image (HWC bytes) as a PNG.
func EncodePNG(pix []byte, size int) ([]byte, error) {
	im := image.NewNRGBA(image.Rect(0, 0, size, size))
	for i := range size * size {
		copy(im.Pix[4*i:4*i+3], pix[3*i:3*i+3])
		im.Pix[4*i+3] = 255
	}
	var b bytes.Buffer
	if err := pngEncoder.Encode(&b, im); err != nil {
		return nil, fmt.Errorf("synthvla: png: %w", err)
	}
	return b.Bytes(), nil
}

// ObjectMeta is an object of the scene in the metadata.
type ObjectMeta struct {
	Index   int     `json:"index"`
	Shape   string  `json:"shape"`
	Colour  string  `json:"colour"`
	HeldOut bool    `json:"held_out,omitempty"`
	X       float64 `json:"x"`
	Y       float64 `json:"y"`
	Z       float64 `json:"z"`
	R       float64 `json:"r"`
	Yaw     float64 `json:"yaw"`
}

// Meta is the metadata of one step: the WebDataset member KEY.json, and
// the episode fields the wds reader copies to the sample (episode, step,
// episode_len, task).
type Meta struct {
	Episode int `json:"episode"`
	// Scene is the episode's scene, when the data set has several
	// episodes per scene (Options.SceneVariants > 1).
	Scene       *int         `json:"scene,omitempty"`
	Step        int          `json:"step"`
	EpisodeLen  int          `json:"episode_len"`
	Task        int          `json:"task"`
	Family      string       `json:"family"`
	Split       Split        `json:"split"`
	Instruction string       `json:"instruction"`
	X           ObjectMeta   `json:"x"`
	Y           *ObjectMeta  `json:"y,omitempty"`
	Objects     []ObjectMeta `json:"objects"`
	Table       string       `json:"table"`
	Texture     string       `json:"texture"`
	Brightness  float64      `json:"brightness"`
	Temperature float64      `json:"temperature"`
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

// StepMeta is the metadata of step t of e: the scene's objects as they are
// at the step, the roles X and Y among them.
func StepMeta(e *Episode, t int) Meta {
	s := e.Frames[t].State
	m := Meta{Episode: e.Index, Step: t, EpisodeLen: len(e.Frames), Task: e.Task.ID(), Family: e.Task.Family.String(),
		Split: e.Split, Instruction: e.Instruction, Table: e.Look.TableName(), Texture: e.Look.Texture.String(),
		Brightness: round4(e.Look.Brightness), Temperature: round4(e.Look.Temperature)}
	if e.Variants > 1 {
		m.Scene = &e.Scene
	}
	for i, o := range s.Objects {
		m.Objects = append(m.Objects, ObjectMeta{Index: i, Shape: o.Shape.String(), Colour: o.Colour.String(), HeldOut: IsHeldOut(o.Kind),
			X: round4(o.X), Y: round4(o.Y), Z: round4(o.Z), R: round4(o.R), Yaw: round4(o.Yaw)})
	}
	m.X = m.Objects[e.XI]
	if e.YI >= 0 {
		y := m.Objects[e.YI]
		m.Y = &y
	}
	return m
}

// EpisodeRecord is the tf.train.Example of episode e for an RLDS shard:
// the steps of rlds.EpisodeExample (image, instruction, action, state) and
// the episode's metadata under episode_metadata/ (see FeaturesJSON).
func EpisodeRecord(e *Episode, pngs [][]byte) tfrecord.Example {
	steps := make([]rlds.Step, len(e.Frames))
	for t := range e.Frames {
		f := &e.Frames[t]
		p := f.Proprio()
		steps[t] = rlds.Step{Image: pngs[t], Instruction: e.Instruction, Action: append([]float32(nil), f.Action[:]...), State: p[:]}
	}
	ex := rlds.EpisodeExample(steps)
	m := StepMeta(e, 0)
	objs, _ := json.Marshal(m.Objects) // plain values: cannot fail
	ex["episode_metadata/episode_id"] = tfrecord.Int64Feature(int64(e.Index))
	ex["episode_metadata/task_id"] = tfrecord.Int64Feature(int64(m.Task))
	ex["episode_metadata/task_family"] = tfrecord.BytesFeature([]byte(m.Family))
	ex["episode_metadata/objects"] = tfrecord.BytesFeature(objs)
	if m.Scene != nil {
		ex["episode_metadata/scene_id"] = tfrecord.Int64Feature(int64(*m.Scene))
	}
	return ex
}

// FeaturesJSON is the features.json of the RLDS folders: that of
// rlds.FeaturesJSON for the steps, with an episode_metadata dict of the
// episode id, the task id, the family and the objects (JSON text).
func FeaturesJSON(size int) ([]byte, error) { return featuresJSON(size, false) }

// featuresJSON is FeaturesJSON, with the scene id in episode_metadata
// when withScene.
func featuresJSON(size int, withScene bool) ([]byte, error) {
	base := rlds.FeaturesJSON(rlds.Layout{ImageH: size, ImageW: size, ImageC: 3, ImageFormat: "png", Action: 7, State: 5, Instruction: true})
	var root map[string]any
	if err := json.Unmarshal(base, &root); err != nil {
		return nil, fmt.Errorf("synthvla: features.json: %w", err)
	}
	const tfds = "tensorflow_datasets.core.features."
	scalar := func(dtype string) map[string]any {
		return map[string]any{"pythonClassName": tfds + "tensor_feature.Tensor",
			"tensor": map[string]any{"shape": map[string]any{}, "dtype": dtype, "encoding": "none"}}
	}
	text := map[string]any{"pythonClassName": tfds + "text_feature.Text", "text": map[string]any{}}
	feats, ok := root["featuresDict"].(map[string]any)["features"].(map[string]any)
	if !ok {
		return nil, errors.New("synthvla: features.json of package rlds has no features")
	}
	feats["episode_metadata"] = map[string]any{"pythonClassName": tfds + "features_dict.FeaturesDict",
		"featuresDict": map[string]any{"features": map[string]any{
			"episode_id": scalar("int64"), "task_id": scalar("int64"), "task_family": text, "objects": text,
		}}}
	if withScene {
		feats["episode_metadata"].(map[string]any)["featuresDict"].(map[string]any)["features"].(map[string]any)["scene_id"] = scalar("int64")
	}
	return json.MarshalIndent(root, "", "  ")
}

// writeRLDSInfo writes the features.json and dataset_info.json of an RLDS
// folder of split sp.
func writeRLDSInfo(opts Options, dir string, sp Split, shards int) error {
	fj, err := featuresJSON(opts.Size, opts.SceneVariants > 1)
	if err != nil {
		return err
	}
	info := map[string]any{
		"name":        "synth_vla",
		"description": "Procedural tabletop manipulation episodes (infonce data synth-vla).",
		"splits":      []map[string]any{{"name": string(sp), "numShards": shards}},
	}
	ib, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return fmt.Errorf("synthvla: %w", err)
	}
	for name, b := range map[string][]byte{"features.json": fj, "dataset_info.json": ib} {
		if err := os.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("synthvla: %w", err)
		}
	}
	return nil
}

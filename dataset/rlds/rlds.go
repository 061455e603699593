package rlds

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/shardidx"
	"github.com/infonce/infonce/dataset/tfrecord"
)

func init() {
	dataset.Register("rlds", func(arg string, opts dataset.OpenOptions) (dataset.Source, error) {
		return Open(arg, opts)
	})
}

// IndexKind names the index of a TFRecord shard of episodes.
const IndexKind = "tfrecord-episodes/1"

// Negative step counts of an index entry mark a record that is one bad
// sample.
const (
	recCRC       = -1 // data CRC mismatch
	recTruncated = -2 // cut by the end of the shard, or a corrupt header
	recBadProto  = -3 // not a tf.train.Example, or no steps
)

var recReason = map[int64]string{recCRC: "crc-mismatch", recTruncated: "truncated-record", recBadProto: "bad-example"}

// Default feature names, relative to steps/, tried in order.
var (
	DefaultImageKeys       = []string{"observation/image", "observation/rgb", "observation/image_0", "observation/agentview_rgb", "observation/front_rgb"}
	DefaultInstructionKeys = []string{"language_instruction", "observation/natural_language_instruction"}
	DefaultActionKeys      = []string{"action"}
	DefaultStateKeys       = []string{"observation/state", "observation/proprio", "observation/robot_state"}
)

// TaskKey is the episode feature of an episode's task id (an int64
// scalar), as infonce data synth-vla writes it.
const TaskKey = "episode_metadata/task_id"

// Keys are the features a sample is made of; Action may hold several
// tensors, concatenated. Task is the episode's task id (TaskKey), nil when
// features.json has none.
type Keys struct {
	Image, Instruction *Spec
	Action, State      []*Spec
	Task               *Spec
}

// ResolveKeys chooses the features of a sample from specs: a given name
// (relative to steps/ or absolute) must exist; an empty one takes the
// first default present. It fails when no image, instruction or action
// feature is found at all.
func ResolveKeys(specs []Spec, opts dataset.OpenOptions) (Keys, error) {
	byPath := map[string]*Spec{}
	for i := range specs {
		byPath[specs[i].Path] = &specs[i]
	}
	under := func(prefix string) []*Spec {
		var out []*Spec
		for i := range specs {
			if strings.HasPrefix(specs[i].Path, prefix+"/") && specs[i].Kind == KindTensor && specs[i].InSteps {
				out = append(out, &specs[i])
			}
		}
		return out
	}
	find := func(what, given string, defaults []string, kind Kind, multi bool) ([]*Spec, error) {
		names := defaults
		if given != "" {
			names = []string{given}
		}
		for _, n := range names {
			for _, p := range []string{"steps/" + n, n} {
				if s, ok := byPath[p]; ok && s.InSteps {
					if s.Kind != kind {
						return nil, fmt.Errorf("rlds: %s feature %q is a %s, want a %s", what, p, s.Kind, kind)
					}
					return []*Spec{s}, nil
				}
				if multi {
					if parts := under(p); len(parts) > 0 {
						return parts, nil
					}
				}
			}
		}
		if given != "" {
			return nil, fmt.Errorf("rlds: no step feature %q for the %s", given, what)
		}
		return nil, nil
	}
	var k Keys
	im, err := find("image", opts.ImageKey, DefaultImageKeys, KindImage, false)
	if err != nil {
		return k, err
	}
	in, err := find("instruction", opts.Instruction, DefaultInstructionKeys, KindText, false)
	if err != nil {
		return k, err
	}
	if k.Action, err = find("action", opts.ActionKey, DefaultActionKeys, KindTensor, true); err != nil {
		return k, err
	}
	if k.State, err = find("state", opts.State, DefaultStateKeys, KindTensor, true); err != nil {
		return k, err
	}
	if len(im) > 0 {
		k.Image = im[0]
	}
	if s, ok := byPath[TaskKey]; ok && !s.InSteps && s.Kind == KindTensor && s.Size() == 1 {
		k.Task = s
	}
	if len(in) > 0 {
		k.Instruction = in[0]
	}
	for _, s := range append(slices.Clone(k.Action), k.State...) {
		if s.Size() < 0 {
			return k, fmt.Errorf("rlds: feature %q has a free size %v: want a fixed shape", s.Path, s.Shape)
		}
		if s.Encoding != "" && s.Encoding != "none" {
			return k, fmt.Errorf("rlds: feature %q is encoded as %q: only \"none\" (a float or int64 list) is read", s.Path, s.Encoding)
		}
	}
	if k.Image == nil && k.Instruction == nil && k.Action == nil {
		return k, errors.New("rlds: features.json has no step image, instruction or action among the Open X-Embodiment names; give the keys")
	}
	return k, nil
}

// Steps is the number of steps of a decoded episode: the length of the
// list of the first of image, instruction or action (divided by the
// action's size).
func (k *Keys) Steps(ex tfrecord.Example) (int, error) {
	if k.Image != nil {
		if f, ok := ex[k.Image.Path]; ok {
			return f.Len(), nil
		}
	}
	if k.Instruction != nil {
		if f, ok := ex[k.Instruction.Path]; ok {
			return f.Len(), nil
		}
	}
	if len(k.Action) > 0 {
		if f, ok := ex[k.Action[0].Path]; ok {
			n := k.Action[0].Size()
			if n == 0 || f.Len()%n != 0 {
				return 0, fmt.Errorf("feature %q holds %d values, not a multiple of %d", k.Action[0].Path, f.Len(), n)
			}
			return f.Len() / n, nil
		}
	}
	return 0, errors.New("the episode has none of the step features")
}

type shard struct {
	path    string
	entries []shardidx.Entry
}

// Source is the steps of one split of an RLDS folder.
type Source struct {
	dir, name, split string
	specs            []Spec
	keys             Keys
	shards           []shard
	// start[j] is the first sample of record j over all shards; records
	// lists (shard, entry) of record j.
	start   []int
	records [][2]int32
	fields  []dataset.Field
	opts    dataset.OpenOptions

	mu      sync.Mutex
	layouts map[int]*list.Element // record → element of lru holding its *layout
	lru     list.List             // most recently used first
	cached  int                   // steps of the cached layouts
	limit   int                   // MaxCachedSteps, lower in tests
}

// onlySplit returns the split of dir's shards when they all belong to one.
func onlySplit(dir string) (string, bool) {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.tfrecord-*-of-*"))
	split := ""
	for _, p := range paths {
		base := filepath.Base(p)
		if strings.HasSuffix(base, ".idx") || strings.Contains(base, ".idx-") {
			continue
		}
		name, _, ok := strings.Cut(base, ".tfrecord-")
		i := strings.LastIndexByte(name, '-')
		if !ok || i < 0 {
			continue
		}
		if sp := name[i+1:]; split == "" {
			split = sp
		} else if sp != split {
			return "", false
		}
	}
	return split, split != ""
}

// Open reads features.json, finds the shards of the split (opts.Split;
// "train", or "test" with opts.Test, by default, or the one split of a
// folder that holds one) and indexes them. A folder without features.json or shards, or whose shards hold
// no record, is an error that names what was looked for.
func Open(dir string, opts dataset.OpenOptions) (*Source, error) {
	split := opts.Split
	if split == "" {
		split = "train"
		if opts.Test {
			split = "test"
		}
	}
	fj := filepath.Join(dir, "features.json")
	b, err := os.ReadFile(fj)
	if err != nil {
		return nil, fmt.Errorf("rlds: %w (want a TFDS-prepared folder with features.json and NAME-%s.tfrecord-NNNNN-of-MMMMM shards)", err, split)
	}
	specs, err := ParseFeatures(b)
	if err != nil {
		return nil, fmt.Errorf("rlds: %s: %w", fj, err)
	}
	keys, err := ResolveKeys(specs, opts)
	if err != nil {
		return nil, err
	}
	s := &Source{dir: dir, split: split, specs: specs, keys: keys, opts: opts, name: filepath.Base(filepath.Clean(dir)), layouts: map[int]*list.Element{}, limit: MaxCachedSteps}
	var info struct {
		Name string `json:"name"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, "dataset_info.json")); err == nil && json.Unmarshal(b, &info) == nil && info.Name != "" {
		s.name = info.Name
	}
	pattern := filepath.Join(dir, "*-"+split+".tfrecord-*-of-*")
	paths, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("rlds: %w", err)
	}
	paths = slices.DeleteFunc(paths, func(p string) bool {
		return strings.HasSuffix(p, ".idx") || strings.Contains(filepath.Base(p), ".idx-")
	})
	slices.Sort(paths)
	if len(paths) == 0 && opts.Split == "" {
		// A folder of one split other than the default is read as it is.
		if only, ok := onlySplit(dir); ok {
			s.split = only
			pattern = filepath.Join(dir, "*-"+only+".tfrecord-*-of-*")
			paths, _ = filepath.Glob(pattern)
			paths = slices.DeleteFunc(paths, func(p string) bool {
				return strings.HasSuffix(p, ".idx") || strings.Contains(filepath.Base(p), ".idx-")
			})
			slices.Sort(paths)
		}
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("rlds: no shard %s of split %q", pattern, split)
	}
	total := 0
	for si, p := range paths {
		ix, err := shardidx.Load(p, IndexKind, opts.CacheDir, func(f *os.File, _ int64) ([]shardidx.Entry, error) {
			return ScanEpisodes(f, &keys)
		})
		if err != nil {
			return nil, fmt.Errorf("rlds: %w", err)
		}
		s.shards = append(s.shards, shard{path: p, entries: ix.Entries})
		for j, e := range ix.Entries {
			s.start = append(s.start, total)
			s.records = append(s.records, [2]int32{int32(si), int32(j)})
			total += int(max(e.N, 1))
			if e.N == 0 {
				total-- // an episode without steps has no sample
			}
		}
	}
	s.start = append(s.start, total)
	if total == 0 {
		return nil, fmt.Errorf("rlds: the %d shards %s hold no step", len(paths), pattern)
	}
	if keys.Image != nil {
		s.fields = append(s.fields, dataset.FieldImage)
	}
	if keys.Instruction != nil {
		s.fields = append(s.fields, dataset.FieldText)
	}
	if keys.Action != nil {
		s.fields = append(s.fields, dataset.FieldAction)
	}
	if keys.State != nil {
		s.fields = append(s.fields, dataset.FieldState)
	}
	s.fields = append(s.fields, dataset.FieldEpisode)
	if keys.Task != nil {
		s.fields = append(s.fields, dataset.FieldTask)
	}
	return s, nil
}

// ScanEpisodes lists the records of a TFRecord shard of episodes: offset,
// data length and number of steps (or a negative code for a bad record).
func ScanEpisodes(r io.Reader, keys *Keys) ([]shardidx.Entry, error) {
	tr := tfrecord.NewReader(r)
	var (
		out []shardidx.Entry
		buf []byte
	)
	for {
		data, rec, err := tr.Next(buf)
		if err == io.EOF {
			return out, nil
		}
		e := shardidx.Entry{Offset: rec.Offset, Size: rec.Len}
		switch {
		case errors.Is(err, tfrecord.ErrDataCRC):
			e.N = recCRC
			out = append(out, e)
			continue
		case err != nil:
			// Nothing after a cut or a corrupt header can be trusted.
			e.N = recTruncated
			return append(out, e), nil
		}
		buf = data[:0]
		ex, err := tfrecord.DecodeExample(data)
		if err != nil {
			e.N = recBadProto
		} else if n, err := keys.Steps(ex); err != nil {
			e.N = recBadProto
		} else {
			e.N = int64(n)
		}
		out = append(out, e)
	}
}

// Name is the data set's name (from dataset_info.json, else the folder's)
// and the split.
func (s *Source) Name() string { return "rlds:" + s.name + " (" + s.split + ")" }

// Len is the number of steps of all episodes (a bad record counts as one).
func (s *Source) Len() int { return s.start[len(s.start)-1] }

// Fields are those of the resolved keys, and episode.
func (s *Source) Fields() []dataset.Field { return s.fields }

// Features are the leaf features of features.json.
func (s *Source) Features() []Spec { return slices.Clone(s.specs) }

// Episodes is the number of records (episodes) of the split.
func (s *Source) Episodes() int { return len(s.records) }

// locate finds the record of sample i and the step in it.
func (s *Source) locate(i int) (rec, step int) {
	rec = sort.Search(len(s.records), func(j int) bool { return s.start[j+1] > i })
	return rec, i - s.start[rec]
}

// layout is what Sample needs of one episode, kept after its record has
// been read once: where each step's encoded image lies in the shard, and
// the (small) instructions, actions and states themselves. A step read
// later costs one positioned read of its image instead of its whole
// episode.
type layout struct {
	rec    int
	T      int
	images [][2]int64 // shard offset and length of the image of each step
	texts  []string
	action []float32 // T × actionN
	state  []float32 // T × stateN
	task   int       // the episode's task id, −1 when unknown
	scene  int64     // episode_metadata/scene_id, −1 when absent
	// bad and badErr describe a problem of the whole episode.
	bad    string
	badErr error
}

// steps is the layout's weight in the cache.
func (l *layout) steps() int { return max(l.T, 1) }

// SceneKey is the episode feature read as Sample.Scene when it holds one
// non-negative integer (synth-vla writes it with --scene-variants).
const SceneKey = "episode_metadata/scene_id"

// MaxCachedSteps bounds the steps whose layouts a Source keeps; beyond it
// the least recently used episodes are dropped and read again when needed.
const MaxCachedSteps = 1 << 20

// buildLayout reads record rec whole (checking its CRC), decodes it and
// extracts the layout of its steps. It returns the record's data too, which
// the caller may use for the step at hand, and the shard offset of data[0].
func (s *Source) buildLayout(rec int) (*layout, []byte, int64, error) {
	ref := s.records[rec]
	sh := &s.shards[ref[0]]
	ent := sh.entries[ref[1]]
	lay := &layout{rec: rec, T: int(ent.N), task: -1, scene: -1}
	f, err := os.Open(sh.path)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("rlds: %w", err)
	}
	defer f.Close()
	data, err := tfrecord.ReadAt(f, ent.Offset, nil)
	switch {
	case errors.Is(err, tfrecord.ErrCRC):
		lay.bad, lay.badErr = "crc-mismatch", err
		return lay, nil, 0, nil
	case errors.Is(err, tfrecord.ErrTruncated):
		lay.bad, lay.badErr = "truncated-record", err
		return lay, nil, 0, nil
	case err != nil:
		return nil, nil, 0, err
	}
	base := ent.Offset + 12
	ex, err := tfrecord.DecodeExample(data)
	if err != nil {
		lay.bad, lay.badErr = "bad-example", err
		return lay, nil, 0, nil
	}
	T, k := lay.T, &s.keys
	if f := ex[SceneKey]; f != nil && f.Kind == tfrecord.KindInt64 && len(f.Ints) == 1 && f.Ints[0] >= 0 {
		lay.scene = f.Ints[0]
	}
	if k.Image != nil {
		f := ex[k.Image.Path]
		if f == nil || len(f.Bytes) != T {
			lay.bad, lay.badErr = "missing-image", fmt.Errorf("feature %q has %d images for %d steps", k.Image.Path, lenOf(f), T)
			return lay, nil, 0, nil
		}
		lay.images = make([][2]int64, T)
		for t, b := range f.Bytes {
			// The bytes alias data (DecodeExample does not copy), so
			// their position in data is the difference of capacities.
			lay.images[t] = [2]int64{base + int64(cap(data)-cap(b)), int64(len(b))}
		}
	}
	if k.Instruction != nil {
		f := ex[k.Instruction.Path]
		if f == nil || len(f.Bytes) != T {
			lay.bad, lay.badErr = "missing-text", fmt.Errorf("feature %q has %d texts for %d steps", k.Instruction.Path, lenOf(f), T)
			return lay, nil, 0, nil
		}
		lay.texts = make([]string, T)
		for t, b := range f.Bytes {
			if t > 0 && string(b) == string(f.Bytes[t-1]) {
				lay.texts[t] = lay.texts[t-1] // one string for a repeated instruction
				continue
			}
			lay.texts[t] = strings.TrimSpace(string(b))
		}
	}
	if k.Task != nil {
		// An episode without a usable task id is still read, without one.
		if f := ex[k.Task.Path]; f != nil && len(f.Ints) == 1 && f.Ints[0] >= 0 && f.Ints[0] <= math.MaxInt32 {
			lay.task = int(f.Ints[0])
		}
	}
	for _, part := range []struct {
		specs  []*Spec
		dst    *[]float32
		reason string
	}{{k.Action, &lay.action, "bad-action"}, {k.State, &lay.state, "bad-state"}} {
		for t := range T {
			for _, sp := range part.specs {
				if *part.dst, err = stepValues(ex, sp, T, t, *part.dst); err != nil {
					lay.bad, lay.badErr = part.reason, err
					return lay, nil, 0, nil
				}
			}
		}
	}
	return lay, data, base, nil
}

// layoutOf returns the layout of record rec, from the cache or built; data
// is the record's data when it was just read, nil otherwise.
func (s *Source) layoutOf(rec int) (*layout, []byte, int64, error) {
	s.mu.Lock()
	if e, ok := s.layouts[rec]; ok {
		s.lru.MoveToFront(e)
		s.mu.Unlock()
		return e.Value.(*layout), nil, 0, nil
	}
	s.mu.Unlock()
	lay, data, base, err := s.buildLayout(rec)
	if err != nil {
		return nil, nil, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.layouts[rec]; !ok {
		s.layouts[rec] = s.lru.PushFront(lay)
		s.cached += lay.steps()
		for s.cached > s.limit && s.lru.Len() > 1 {
			old := s.lru.Remove(s.lru.Back()).(*layout)
			delete(s.layouts, old.rec)
			s.cached -= old.steps()
		}
	}
	return lay, data, base, nil
}

// Sample fills dst with step i: the step's image (read alone once its
// episode's layout is known), instruction, action and state, and the
// episode's task id when features.json has TaskKey.
func (s *Source) Sample(ctx context.Context, i int, dst *dataset.Sample) error {
	if i < 0 || i >= s.Len() {
		return fmt.Errorf("rlds: %s: sample %d out of range [0, %d)", s.Name(), i, s.Len())
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rec, t := s.locate(i)
	ref := s.records[rec]
	sh := &s.shards[ref[0]]
	ent := sh.entries[ref[1]]
	dst.Reset()
	dst.Index = i
	dst.Key = fmt.Sprintf("%s#%d/%d", filepath.Base(sh.path), ref[1], t)
	badf := func(reason string, err error) error {
		return &dataset.BadSample{Reason: reason, Key: dst.Key, Err: err}
	}
	if ent.N < 0 {
		return badf(recReason[ent.N], nil)
	}
	lay, data, base, err := s.layoutOf(rec)
	if err != nil {
		return err
	}
	if lay.bad != "" {
		return badf(lay.bad, lay.badErr)
	}
	T := lay.T
	dst.Episode, dst.Step, dst.EpisodeLen, dst.Task = int64(rec), t, T, lay.task
	dst.Scene = lay.scene
	if lay.images != nil {
		off, n := lay.images[t][0], lay.images[t][1]
		var b []byte
		if data != nil {
			b = data[off-base : off-base+n]
		} else if b, err = readRange(sh.path, off, n); err != nil {
			return badf("truncated-record", err)
		}
		if dst.Image, err = dataset.DecodeImage(b, dst.Key, s.opts.Background); err != nil {
			return err
		}
	}
	if lay.texts != nil {
		if dst.Text = lay.texts[t]; dst.Text == "" {
			return badf("missing-text", nil)
		}
	}
	if len(s.keys.Action) > 0 {
		n := len(lay.action) / T
		dst.Action = append(dst.Action, lay.action[t*n:(t+1)*n]...)
		dst.ActionShape = append(dst.ActionShape, n)
		if err := finite(dst.Action); err != nil {
			return badf("non-finite-action", err)
		}
	}
	if len(s.keys.State) > 0 {
		n := len(lay.state) / T
		dst.State = append(dst.State, lay.state[t*n:(t+1)*n]...)
		if err := finite(dst.State); err != nil {
			return badf("non-finite-state", err)
		}
	}
	return nil
}

// readRange reads n bytes at off of the file at path.
func readRange(path string, off, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("image of %d bytes at offset %d: %w", n, off, err)
	}
	return b, nil
}

func lenOf(f *tfrecord.Feature) int {
	if f == nil {
		return 0
	}
	return f.Len()
}

// stepValues appends the values of step t of a tensor feature to dst.
func stepValues(ex tfrecord.Example, sp *Spec, T, t int, dst []float32) ([]float32, error) {
	f := ex[sp.Path]
	n := sp.Size()
	if f == nil {
		return dst, fmt.Errorf("no feature %q", sp.Path)
	}
	if f.Len() != n*T {
		return dst, fmt.Errorf("feature %q holds %d values, want %d steps × %d", sp.Path, f.Len(), T, n)
	}
	switch f.Kind {
	case tfrecord.KindFloat:
		dst = append(dst, f.Floats[t*n:(t+1)*n]...)
	case tfrecord.KindInt64:
		for _, v := range f.Ints[t*n : (t+1)*n] {
			dst = append(dst, float32(v))
		}
	default:
		return dst, fmt.Errorf("feature %q is a %s, want numbers", sp.Path, f.Kind)
	}
	return dst, nil
}

func finite(v []float32) error {
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("value %d is %v", i, x)
		}
	}
	return nil
}

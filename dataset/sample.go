package dataset

import (
	"context"
	"fmt"
)

// Field names a kind of data a sample can carry. Objectives ask for views,
// and views are built from fields: a source fills the fields it has.
type Field string

// The fields a source can fill.
const (
	FieldImage   Field = "image"   // Sample.Image
	FieldText    Field = "text"    // Sample.Text (a caption or an instruction)
	FieldLabel   Field = "label"   // Sample.Label (a class index into the source's classes)
	FieldAction  Field = "action"  // Sample.Action (one step's action, or a chunk)
	FieldState   Field = "state"   // Sample.State (proprioception)
	FieldEpisode Field = "episode" // Sample.Episode, Step and EpisodeLen
	FieldTask    Field = "task"    // Sample.Task
	FieldScene   Field = "scene"   // Sample.Scene
)

// Picture is a decoded image: H rows of W pixels of C channels (1 grey, 3
// RGB), unsigned bytes, row-major and channel-interleaved (HWC): channel c
// of pixel (y, x) is Pix[(y*W+x)*C+c].
type Picture struct {
	H, W, C int
	Pix     []byte
}

// Sample is one example with named fields. A field a source does not have
// keeps its zero value, except Label, Episode, Task and Scene, which are
// −1 when absent (Reset sets them so).
type Sample struct {
	// Index is the sample's position in its source, the key of every
	// random choice made for it.
	Index int
	// Key names the sample in its source (a tar member's key, a file's
	// path, "episode/step"), for messages about bad input.
	Key string

	Image Picture
	Text  string
	Label int

	// Action holds ActionShape[0]×ActionShape[1]… float32 values, row-major:
	// one step's action (shape [A]) or a chunk ([H, A]).
	Action      []float32
	ActionShape []int
	State       []float32

	// Episode is the id of the episode the sample belongs to, Step its
	// index in the episode and EpisodeLen the episode's length.
	Episode    int64
	Step       int
	EpisodeLen int
	Task       int
	// Scene is the id of the scene the sample's episode starts from:
	// episodes of one scene show the same first frame with other
	// instructions (synth-vla --scene-variants).
	Scene int64
}

// Reset empties s for reuse, keeping the capacity of Action, ActionShape
// and State. Image.Pix is dropped, not reused: it may be a read-only view
// of a source's memory.
func (s *Sample) Reset() {
	*s = Sample{
		Action:      s.Action[:0],
		ActionShape: s.ActionShape[:0],
		State:       s.State[:0],
		Label:       -1,
		Episode:     -1,
		Task:        -1,
		Scene:       -1,
	}
}

// Has reports whether s carries field f.
func (s *Sample) Has(f Field) bool {
	switch f {
	case FieldImage:
		return len(s.Image.Pix) > 0
	case FieldText:
		return s.Text != ""
	case FieldLabel:
		return s.Label >= 0
	case FieldAction:
		return len(s.Action) > 0
	case FieldState:
		return len(s.State) > 0
	case FieldEpisode:
		return s.Episode >= 0
	case FieldTask:
		return s.Task >= 0
	case FieldScene:
		return s.Scene >= 0
	}
	return false
}

// Source gives random access to the samples of one split of a data set.
// Random access is what keeps the global order of samples independent of
// the number of workers: the sampler draws indices, and each rank reads only
// the rows it owns. Implementations are safe for concurrent use by several
// goroutines, each with its own dst.
type Source interface {
	// Name says where the samples come from, for messages.
	Name() string
	// Len is the number of samples.
	Len() int
	// Fields lists the fields every sample of the source carries.
	Fields() []Field
	// Sample fills dst (after dst.Reset) with sample i, 0 ≤ i < Len(). A
	// sample that cannot be read returns an error wrapping ErrBadSample,
	// with the reason, so that the caller can count and skip it.
	Sample(ctx context.Context, i int, dst *Sample) error
}

// ErrBadSample marks a sample that cannot be used (a corrupt image, a
// missing caption, an action of the wrong shape): the run counts it by
// reason and skips it, instead of failing.
var ErrBadSample = fmt.Errorf("bad sample")

// BadSample is the error of a sample that cannot be used: Reason is a short
// stable word for counting ("corrupt-image", "missing-text", "bad-action"),
// Key names the sample.
type BadSample struct {
	Reason string
	Key    string
	Err    error
}

func (e *BadSample) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("bad sample %s (%s): %v", e.Key, e.Reason, e.Err)
	}
	return fmt.Sprintf("bad sample %s (%s)", e.Key, e.Reason)
}

// Is makes errors.Is(err, ErrBadSample) true for every BadSample.
func (e *BadSample) Is(target error) bool { return target == ErrBadSample }

func (e *BadSample) Unwrap() error { return e.Err }

// Split is the Source of one split of a Set: grey images with their label,
// no text (captions are a view built from the label, see Captioner).
type Split struct {
	Set  *Set
	Test bool // the test split instead of the training split
}

func (s Split) images() *Images {
	if s.Test {
		return &s.Set.Test
	}
	return &s.Set.Train
}

// Name is the set's name and the split.
func (s Split) Name() string {
	if s.Test {
		return s.Set.Name + " (test)"
	}
	return s.Set.Name + " (train)"
}

// Len is the number of images of the split.
func (s Split) Len() int { return s.images().N }

// Fields are image and label.
func (s Split) Fields() []Field { return []Field{FieldImage, FieldLabel} }

// Sample fills dst with image i and its label; the pixels are a view of the
// set's memory, not a copy.
func (s Split) Sample(_ context.Context, i int, dst *Sample) error {
	im := s.images()
	if i < 0 || i >= im.N {
		return fmt.Errorf("dataset: %s: sample %d out of range [0, %d)", s.Name(), i, im.N)
	}
	dst.Reset()
	dst.Index = i
	dst.Image = Picture{H: im.H, W: im.W, C: 1, Pix: im.Image(i)}
	dst.Label = int(im.Labels[i])
	return nil
}

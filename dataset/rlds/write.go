package rlds

import (
	"encoding/json"
	"strconv"

	"github.com/infonce/infonce/dataset/tfrecord"
)

// Step is one step of an episode to write.
type Step struct {
	Image       []byte // an encoded image
	Instruction string
	Action      []float32
	State       []float32
}

// Layout gives the shapes of the episodes FeaturesJSON describes.
type Layout struct {
	ImageH, ImageW, ImageC int    // 0: no image
	ImageFormat            string // "png" or "jpeg"
	Action, State          int    // sizes; 0: none
	Instruction            bool
}

const tfds = "tensorflow_datasets.core.features."

// FeaturesJSON writes the features.json of episodes of the layout, in the
// TFDS FeaturesDict form ParseFeatures reads: a "steps" Dataset with
// observation/image, observation/state, action, language_instruction,
// is_first and is_last.
func FeaturesJSON(l Layout) []byte {
	dims := func(d ...int) map[string]any {
		s := make([]string, len(d))
		for i, v := range d {
			s[i] = strconv.Itoa(v)
		}
		return map[string]any{"dimensions": s}
	}
	tensor := func(dtype string, d ...int) map[string]any {
		return map[string]any{"pythonClassName": tfds + "tensor_feature.Tensor",
			"tensor": map[string]any{"shape": dims(d...), "dtype": dtype, "encoding": "none"}}
	}
	dict := func(f map[string]any) map[string]any {
		return map[string]any{"pythonClassName": tfds + "features_dict.FeaturesDict", "featuresDict": map[string]any{"features": f}}
	}
	obs := map[string]any{}
	if l.ImageH > 0 {
		obs["image"] = map[string]any{"pythonClassName": tfds + "image_feature.Image",
			"image": map[string]any{"shape": dims(l.ImageH, l.ImageW, l.ImageC), "dtype": "uint8", "encodingFormat": l.ImageFormat}}
	}
	if l.State > 0 {
		obs["state"] = tensor("float32", l.State)
	}
	step := map[string]any{"is_first": tensor("bool"), "is_last": tensor("bool"), "observation": dict(obs)}
	if l.Action > 0 {
		step["action"] = tensor("float32", l.Action)
	}
	if l.Instruction {
		step["language_instruction"] = map[string]any{"pythonClassName": tfds + "text_feature.Text", "text": map[string]any{}}
	}
	root := dict(map[string]any{
		"steps": map[string]any{"pythonClassName": tfds + "dataset_feature.Dataset",
			"sequence": map[string]any{"feature": dict(step), "length": "-1"}},
	})
	b, _ := json.MarshalIndent(root, "", "  ") // maps of strings: cannot fail
	return b
}

// EpisodeExample flattens an episode into the tf.train.Example of one
// record, under the keys FeaturesJSON describes.
func EpisodeExample(steps []Step) tfrecord.Example {
	ex := tfrecord.Example{}
	first, last := make([]int64, len(steps)), make([]int64, len(steps))
	var images [][]byte
	var texts [][]byte
	var action, state []float32
	for t, s := range steps {
		first[t], last[t] = b2i(t == 0), b2i(t == len(steps)-1)
		if s.Image != nil {
			images = append(images, s.Image)
		}
		if s.Instruction != "" {
			texts = append(texts, []byte(s.Instruction))
		}
		action = append(action, s.Action...)
		state = append(state, s.State...)
	}
	ex["steps/is_first"] = tfrecord.Int64Feature(first...)
	ex["steps/is_last"] = tfrecord.Int64Feature(last...)
	if images != nil {
		ex["steps/observation/image"] = tfrecord.BytesFeature(images...)
	}
	if texts != nil {
		ex["steps/language_instruction"] = tfrecord.BytesFeature(texts...)
	}
	if action != nil {
		ex["steps/action"] = tfrecord.FloatFeature(action...)
	}
	if state != nil {
		ex["steps/observation/state"] = tfrecord.FloatFeature(state...)
	}
	return ex
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

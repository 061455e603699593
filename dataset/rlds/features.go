package rlds

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Kind is the kind of a leaf feature.
type Kind string

// The kinds of leaf features.
const (
	KindImage  Kind = "image"  // an encoded image (png, jpeg) per value
	KindTensor Kind = "tensor" // numbers: float_list or int64_list
	KindText   Kind = "text"   // a UTF-8 string per value
	KindOther  Kind = "other"  // anything else (video, audio, …): not read
)

// Spec is one leaf feature of features.json.
type Spec struct {
	Path     string // "steps/observation/image"
	Kind     Kind
	DType    string // "float32", "uint8", "bool", …
	Shape    []int  // of one value (one step in steps/); −1 for a free size
	Encoding string // "png", "jpeg" for images; "none", "bytes", "zlib" for tensors
	InSteps  bool   // under the steps Dataset: one value per step
}

// Size is the number of numbers of one value, or −1 when a size is free.
func (s *Spec) Size() int {
	n := 1
	for _, d := range s.Shape {
		if d < 0 {
			return -1
		}
		n *= d
	}
	return n
}

// ErrFeatures wraps every error of ParseFeatures.
var ErrFeatures = errors.New("rlds: bad features.json")

// MaxDepth bounds the nesting of features.json.
const MaxDepth = 32

// ParseFeatures reads the TFDS FeaturesDict JSON of features.json into its
// leaf features, sorted by path. Nodes are recognised by their keys:
// "featuresDict" (a dict, {"features": {name: node}}), "sequence" (a
// Dataset or Sequence, {"feature": node}; its leaves are InSteps), "image",
// "tensor", "text", "classLabel" (an int64 scalar).
func ParseFeatures(b []byte) ([]Spec, error) {
	var root map[string]any
	if err := json.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFeatures, err)
	}
	if root["featuresDict"] == nil {
		return nil, fmt.Errorf("%w: the root is not a FeaturesDict", ErrFeatures)
	}
	var out []Spec
	if err := walk(root, "", false, 0, &out); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no feature", ErrFeatures)
	}
	slices.SortFunc(out, func(a, b Spec) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "/" + name
}

func walk(node map[string]any, path string, inSteps bool, depth int, out *[]Spec) error {
	if depth > MaxDepth {
		return fmt.Errorf("%w: nested deeper than %d at %q", ErrFeatures, MaxDepth, path)
	}
	obj := func(v any) map[string]any { m, _ := v.(map[string]any); return m }
	switch {
	case node["featuresDict"] != nil:
		fd := obj(node["featuresDict"])
		feats := obj(fd["features"])
		if feats == nil {
			return fmt.Errorf("%w: featuresDict at %q has no features", ErrFeatures, path)
		}
		names := make([]string, 0, len(feats))
		for k := range feats {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			child := obj(feats[k])
			if child == nil {
				return fmt.Errorf("%w: feature %q is not an object", ErrFeatures, join(path, k))
			}
			if err := walk(child, join(path, k), inSteps, depth+1, out); err != nil {
				return err
			}
		}
	case node["sequence"] != nil:
		seq := obj(node["sequence"])
		child := obj(seq["feature"])
		if child == nil {
			return fmt.Errorf("%w: sequence at %q has no feature", ErrFeatures, path)
		}
		if inSteps {
			return fmt.Errorf("%w: nested sequence at %q is not read", ErrFeatures, path)
		}
		return walk(child, path, true, depth+1, out)
	case node["image"] != nil:
		im := obj(node["image"])
		s := Spec{Path: path, Kind: KindImage, InSteps: inSteps, DType: str(im["dtype"]), Encoding: str(im["encodingFormat"])}
		var err error
		if s.Shape, err = shape(im["shape"], path); err != nil {
			return err
		}
		*out = append(*out, s)
	case node["tensor"] != nil:
		t := obj(node["tensor"])
		s := Spec{Path: path, Kind: KindTensor, InSteps: inSteps, DType: str(t["dtype"]), Encoding: str(t["encoding"])}
		var err error
		if s.Shape, err = shape(t["shape"], path); err != nil {
			return err
		}
		if s.DType == "string" {
			s.Kind = KindText
		}
		*out = append(*out, s)
	case node["text"] != nil:
		*out = append(*out, Spec{Path: path, Kind: KindText, InSteps: inSteps, DType: "string", Shape: []int{}})
	case node["classLabel"] != nil:
		*out = append(*out, Spec{Path: path, Kind: KindTensor, InSteps: inSteps, DType: "int64", Shape: []int{}})
	default:
		if path == "" {
			return fmt.Errorf("%w: the root is not a featuresDict", ErrFeatures)
		}
		*out = append(*out, Spec{Path: path, Kind: KindOther, InSteps: inSteps})
	}
	return nil
}

func str(v any) string { s, _ := v.(string); return s }

// shape reads {"dimensions": ["256", "256", "3"]} (strings or numbers;
// "-1" or null is a free size). An absent shape is a scalar.
func shape(v any, path string) ([]int, error) {
	m, _ := v.(map[string]any)
	dims, _ := m["dimensions"].([]any)
	out := make([]int, 0, len(dims))
	for _, d := range dims {
		var n int
		switch x := d.(type) {
		case string:
			v, err := strconv.Atoi(x)
			if err != nil {
				return nil, fmt.Errorf("%w: dimension %q of %q", ErrFeatures, x, path)
			}
			n = v
		case float64:
			n = int(x)
			if float64(n) != x {
				return nil, fmt.Errorf("%w: dimension %v of %q", ErrFeatures, x, path)
			}
		case nil:
			n = -1
		default:
			return nil, fmt.Errorf("%w: dimension %v of %q", ErrFeatures, d, path)
		}
		if n < -1 || n > 1<<24 {
			return nil, fmt.Errorf("%w: dimension %d of %q", ErrFeatures, n, path)
		}
		out = append(out, n)
	}
	return out, nil
}

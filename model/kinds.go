package model

import (
	"cmp"
	"fmt"
	"sort"
	"strings"

	"github.com/infonce/infonce/gemm"
)

// Tower is an encoder of one modality over its segments of the model's flat
// buffers. Forward maps a Batch of N rows to N×Dim L2-normalised
// embeddings (a view valid until the next Forward); Backward takes
// ∂L/∂emb of the last Forward and accumulates the gradients of the tower's
// parameters into P.G. Each kind registers itself with registerTower; the
// kind's name is what the --image-tower and --text-tower flags take and
// what a checkpoint's configuration records.
type Tower[T gemm.Float] interface {
	// Kind is the registered name of the tower's kind ("mlp", "bow").
	Kind() string
	Forward(in Batch[T]) ([]T, error)
	Backward(dEmb []T) error
	// Features returns the representation before the projection to the
	// embedding space, for linear probes: N rows of the last Forward.
	Features() []T
	// SetGradReady makes Backward call ready with each parameter gradient
	// the moment it is final, in decreasing buffer order (nil stops it).
	SetGradReady(ready func(g []T))
}

// Modalities of towers: which side of a Config a kind encodes.
const (
	ModalityImage  = "image"
	ModalityText   = "text"
	ModalityAction = "action"
	// ModalityFusion names the fusion head in Describe: not a tower, but
	// parameters of the model like one.
	ModalityFusion = "fusion"
)

// towerKind is what a kind of tower registers: its modality, the checks of
// its Config fields, its parameters in buffer order (declare, with how
// each is initialised), and how to wire a tower over views of the buffers.
type towerKind struct {
	modality string
	// check returns the errors of the kind's fields of c.
	check func(c Config) []error
	// count returns the number of parameters, false past limit (it guards
	// declare against overflow, so it runs only on a checked Config).
	count   func(c Config, limit int) (int, bool)
	declare func(c Config, l *layout)
	build32 func(c Config, cur *cursor[float32]) Tower[float32]
	build64 func(c Config, cur *cursor[float64]) Tower[float64]
}

var towerKinds = map[string]towerKind{}

// registerTower adds a kind of tower under name; it is called from the
// init function of the kind's file.
func registerTower(name string, k towerKind) {
	key := k.modality + "/" + name
	if _, dup := towerKinds[key]; dup {
		panic("model: tower kind " + key + " registered twice")
	}
	towerKinds[key] = k
}

// TowerKinds lists the registered kinds of towers of a modality, sorted.
func TowerKinds(modality string) []string {
	var names []string
	for key, k := range towerKinds {
		if k.modality == modality {
			names = append(names, key[len(modality)+1:])
		}
	}
	sort.Strings(names)
	return names
}

// kindOf returns the registered kind name for modality, or an error that
// lists the kinds there are.
func kindOf(name, modality string) (towerKind, error) {
	k, ok := towerKinds[modality+"/"+name]
	if !ok {
		return towerKind{}, fmt.Errorf("model: %s tower %q is unknown: use one of %v", modality, name, TowerKinds(modality))
	}
	return k, nil
}

// build wires the tower of kind k over the cursor, for the element type T.
func build[T gemm.Float](k towerKind, c Config, cur *cursor[T]) Tower[T] {
	switch cur := any(cur).(type) {
	case *cursor[float32]:
		return any(k.build32(c, cur)).(Tower[T])
	case *cursor[float64]:
		return any(k.build64(c, cur)).(Tower[T])
	}
	panic("model: unsupported element type")
}

// sides lists the towers of c in buffer order: the image tower, then the
// text tower when c has one.
func (c Config) sides() []string {
	sides := []string{ModalityImage}
	if c.TextVocab > 0 {
		sides = append(sides, ModalityText)
	}
	if c.ActionIn > 0 {
		sides = append(sides, ModalityAction)
	}
	return sides
}

// kind is the registered kind of the tower of modality in c.
func (c Config) kind(modality string) towerKind {
	return towerKinds[modality+"/"+c.kindName(modality)]
}

// kindName is the kind of the tower of modality in c, defaults applied.
func (c Config) kindName(modality string) string {
	switch modality {
	case ModalityImage:
		return cmp.Or(c.ImageTower, TowerMLP)
	case ModalityAction:
		return cmp.Or(c.ActionTower, TowerMLP)
	default:
		return cmp.Or(c.TextTower, TowerBagOfWords)
	}
}

// TowerInfo describes one tower of a Config: its kind, its modality and its
// parameter tensors in buffer order.
type TowerInfo struct {
	Modality string    `json:"modality"`
	Kind     string    `json:"kind"`
	Params   int       `json:"params"`
	Segments []Segment `json:"segments"`
}

// Describe lists the towers of a valid Config as a model built from it has
// them, and the fusion head (modality ModalityFusion) when c has one; the
// logit scale, which no tower owns, is left out.
func (c Config) Describe() ([]TowerInfo, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.clone()
	var out []TowerInfo
	l := &layout{}
	for _, side := range c.sides() {
		n, s := l.n, len(l.segs)
		c.kind(side).declare(c, l)
		out = append(out, TowerInfo{Modality: side, Kind: c.kindName(side), Params: l.n - n, Segments: l.segs[s:]})
	}
	if c.Fusion != "" {
		// The fusion head comes after the logit scale: its offsets are
		// those of the whole layout.
		var segs []Segment
		n := 0
		for _, s := range layoutOf(c).segs {
			if strings.HasPrefix(s.Name, "fusion.") {
				segs = append(segs, s)
				n += s.Len
			}
		}
		out = append(out, TowerInfo{Modality: ModalityFusion, Kind: c.Fusion, Params: n, Segments: segs})
	}
	return out, nil
}

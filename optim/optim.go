package optim

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/infonce/infonce/gemm"
)

// Group is one parameter tensor in the flat buffer: elements [Off, Off+Len).
// NoDecay tensors (biases, norm gains, the logit scale) get no weight decay
// and, for LARS, no trust-ratio adaptation.
type Group struct {
	Name     string
	Off, Len int
	NoDecay  bool
}

// Buffer is one named state buffer of an optimizer (a moment), as saved in a
// checkpoint. Data aliases the optimizer's own storage: restoring a
// checkpoint means copying the saved values into Data.
type Buffer[T gemm.Float] struct {
	Name string
	Data []T
}

// Optimizer updates the flat parameter buffer w from the flat gradient
// buffer g.
type Optimizer[T gemm.Float] interface {
	// Step applies one update with learning rate lr. It returns an error,
	// and leaves w and the state untouched, when len(w) or len(g) differs
	// from the size the optimizer was built for or when its configuration
	// is invalid.
	Step(w, g []T, lr T) error
	// State returns the named state buffers (the moments) in a fixed order.
	State() []Buffer[T]
	// SetStep sets the number of steps taken so far (for resume: Adam's
	// bias correction depends on it).
	SetStep(n int64)
	// StepCount returns the number of steps taken so far.
	StepCount() int64
}

// Names lists the optimizers New knows.
var Names = []string{"sgd", "adamw", "lars"}

// New builds the named optimizer ("sgd", "adamw" or "lars") with its default
// configuration and weight decay wd, for a buffer of n elements.
func New[T gemm.Float](name string, n int, groups []Group, wd float64) (Optimizer[T], error) {
	if err := ValidateGroups(n, groups); err != nil {
		return nil, err
	}
	var (
		o   Optimizer[T]
		err error
	)
	switch strings.ToLower(name) {
	case "sgd":
		cfg := DefaultSGDConfig()
		cfg.WeightDecay = wd
		s := NewSGD[T](n, groups, cfg)
		o, err = s, s.err
	case "adamw":
		cfg := DefaultAdamWConfig()
		cfg.WeightDecay = wd
		a := NewAdamW[T](n, groups, cfg)
		o, err = a, a.err
	case "lars":
		cfg := DefaultLARSConfig()
		cfg.WeightDecay = wd
		l := NewLARS[T](n, groups, cfg)
		o, err = l, l.err
	default:
		return nil, fmt.Errorf("optim: unknown optimizer %q (known: %s)", name, strings.Join(Names, ", "))
	}
	if err != nil {
		return nil, err
	}
	return o, nil
}

// ValidateGroups reports whether groups describe non-overlapping tensors
// inside a buffer of n elements.
func ValidateGroups(n int, groups []Group) error {
	_, err := segments(n, groups)
	return err
}

// segment is one tensor of the buffer as the update loops see it: a group,
// or a run of elements that no group covers (decayed).
type segment struct {
	off, len int
	decay    bool
}

// segments sorts the groups by offset, checks them, and fills the gaps with
// decayed segments so that the result covers [0, n) exactly.
func segments(n int, groups []Group) ([]segment, error) {
	if n < 0 {
		return nil, fmt.Errorf("optim: negative buffer size %d", n)
	}
	gs := slices.Clone(groups)
	slices.SortStableFunc(gs, func(a, b Group) int { return a.Off - b.Off })
	var segs []segment
	pos := 0
	for i, g := range gs {
		if g.Off < 0 || g.Len < 0 || g.Off > n || g.Len > n-g.Off {
			return nil, fmt.Errorf("optim: group %q [%d, %d+%d) lies outside the buffer of %d elements", g.Name, g.Off, g.Off, g.Len, n)
		}
		if g.Off < pos {
			return nil, fmt.Errorf("optim: group %q at offset %d overlaps group %q ending at %d", g.Name, g.Off, gs[i-1].Name, pos)
		}
		if g.Off > pos {
			segs = append(segs, segment{off: pos, len: g.Off - pos, decay: true})
		}
		if g.Len > 0 {
			segs = append(segs, segment{off: g.Off, len: g.Len, decay: !g.NoDecay})
		}
		pos = g.Off + g.Len
	}
	if pos < n {
		segs = append(segs, segment{off: pos, len: n - pos, decay: true})
	}
	return segs, nil
}

// checkLen is the length check shared by every Step.
func checkLen[T gemm.Float](name string, n int, w, g []T) error {
	if len(w) != n || len(g) != n {
		return fmt.Errorf("optim: %s built for %d parameters, got len(w)=%d len(g)=%d", name, n, len(w), len(g))
	}
	return nil
}

func checkFinite(name string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("optim: %s is %v", name, v)
	}
	return nil
}

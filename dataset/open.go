package dataset

import (
	"fmt"
	"image/color"
	"slices"
	"strings"
	"sync"
)

// OpenOptions are the settings of Open. The zero value is usable: every
// field has a default, given with it.
type OpenOptions struct {
	// Test selects the test split of mnist and idx:DIR, and the split
	// named "test" of rlds:DIR when Split is empty.
	Test bool
	// Split is the split of an rlds:DIR folder ("train" by default).
	Split string
	// Classes is the class-names file of mnist and idx:DIR (see Load).
	Classes string
	// Templates is a file of caption templates, one a line, with {} where
	// the class name goes (see ReadTemplates); folder:DIR uses the
	// built-in generic templates without it.
	Templates string
	// Seed keys the random parts of a source (synthetic samples, the caption
	// template a folder sample gets in Sample).
	Seed uint64

	// Keys of a csv: manifest, with OpenCLIP's names as defaults: the
	// Separator of a CSV manifest ("\t"; a .jsonl manifest is JSON Lines),
	// ImageKey ("filepath"), CaptionKey ("title"), LabelKey (none) and
	// ActionKey (none: the column holding the path of a .npy action).
	// ImageKey and ActionKey also name the step features of rlds:DIR.
	// WebDataset shards name their members by extension and use none of
	// these.
	Separator                                 string
	ImageKey, CaptionKey, LabelKey, ActionKey string

	// Instruction and State name the step features of rlds:DIR, relative
	// to steps/ or absolute; empty means the first of the Open
	// X-Embodiment names present (see package rlds).
	Instruction, State string

	// CacheDir holds the member and record indexes of shards whose folder
	// is not writable (os.UserCacheDir()/infonce by default).
	CacheDir string

	// Background is the colour transparent pixels are composited onto
	// (White when nil).
	Background color.Color

	// Synthetic sets synthetic[:N]; zero fields take their defaults.
	Synthetic SyntheticConfig
}

// Opener opens the source named by arg, the part of a spec after its
// scheme ("DIR" of "folder:DIR").
type Opener func(arg string, opts OpenOptions) (Source, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Opener{}
)

// Register makes Open accept specs "scheme:ARG". Packages of sources call it
// from init; a second registration of a scheme replaces the first.
func Register(scheme string, open Opener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	registry[scheme] = open
}

// Schemes lists the registered schemes, sorted.
func Schemes() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	s := make([]string, 0, len(registry))
	for k := range registry {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

// Open opens the source a spec names:
//
//	mnist           the embedded MNIST, through Load and Split
//	idx:DIR         a directory of idx files, through Load and Split
//	synthetic[:N]   N random samples (default 1024), see Synthetic
//	folder:DIR      an image-folder tree (package dataset/folder)
//	csv:FILE        a CSV/TSV or JSON Lines manifest (package dataset/manifest)
//	wds:PATTERN     WebDataset tar shards (package dataset/wds)
//	rlds:DIR        a TFDS-prepared RLDS folder (package dataset/rlds)
//
// The last four are registered by their packages; importing
// github.com/infonce/infonce/dataset/sources registers them all.
func Open(spec string, opts OpenOptions) (Source, error) {
	switch {
	case spec == "mnist" || strings.HasPrefix(spec, "idx:"):
		set, err := Load(spec, opts.Classes)
		if err != nil {
			return nil, err
		}
		return Split{Set: set, Test: opts.Test}, nil
	case spec == "synthetic" || strings.HasPrefix(spec, "synthetic:"):
		return openSynthetic(strings.TrimPrefix(strings.TrimPrefix(spec, "synthetic"), ":"), opts)
	}
	scheme, arg, ok := strings.Cut(spec, ":")
	registryMu.RLock()
	open := registry[scheme]
	registryMu.RUnlock()
	if !ok || open == nil {
		return nil, fmt.Errorf("dataset: unknown source %q: want mnist, idx:DIR, synthetic[:N] or one of %s (registered: %v; import github.com/infonce/infonce/dataset/sources to register them all)",
			spec, "folder:DIR, csv:FILE, wds:PATTERN, rlds:DIR", Schemes())
	}
	if arg == "" {
		return nil, fmt.Errorf("dataset: %q names nothing after %q", spec, scheme+":")
	}
	return open(arg, opts)
}

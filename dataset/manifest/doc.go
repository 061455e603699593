// Package manifest reads a manifest of samples as a dataset.Source and
// registers the scheme "csv:FILE" with dataset.Open. The manifest is a
// CSV file with a header row (the separator is a tab by default, as in
// OpenCLIP's --csv-separator), or JSON Lines when FILE ends in .jsonl: one
// object per line.
//
// The columns (or keys) read follow OpenCLIP's names:
//
//	ImageKey    "filepath"   path of the image file
//	CaptionKey  "title"      the caption
//	LabelKey    (none)       a class: a non-negative integer, or a name
//	                         (names are sorted, and a label is the index
//	                         of its name)
//	ActionKey   (none)       path of a .npy array with the action; in JSON
//	                         Lines also an inline array of numbers
//
// Relative paths are resolved against the manifest's folder. The manifest
// is read once, when the source is opened; images and actions are read by
// Sample. A row that cannot be parsed ("bad-row"), an empty caption
// ("missing-text"), an empty image path ("missing-image"), a file that
// cannot be read ("unreadable-file"), an image that does not decode
// ("corrupt-image"), an action that is not a valid .npy ("bad-npy") or has
// a NaN or an infinity ("non-finite-action") make a bad sample; the
// others are read.
package manifest

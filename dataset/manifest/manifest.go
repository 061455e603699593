package manifest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/npy"
)

func init() {
	dataset.Register("csv", func(arg string, opts dataset.OpenOptions) (dataset.Source, error) {
		return Open(arg, opts)
	})
}

// Keys are the column names of a manifest.
type Keys struct {
	Separator                     rune
	Image, Caption, Label, Action string
	captionExplicit               bool
}

// keysOf fills in OpenCLIP's defaults.
func keysOf(o dataset.OpenOptions) (Keys, error) {
	k := Keys{Separator: '\t', Image: "filepath", Caption: "title", Label: o.LabelKey, Action: o.ActionKey}
	if o.Separator != "" {
		r, n := utf8.DecodeRuneInString(o.Separator)
		if o.Separator == `\t` {
			r, n = '\t', 2
		}
		if n != len(o.Separator) || r == '"' || r == '\n' || r == '\r' || r == utf8.RuneError {
			return k, fmt.Errorf("manifest: separator %q: want one character other than a quote or a newline", o.Separator)
		}
		k.Separator = r
	}
	if o.ImageKey != "" {
		k.Image = o.ImageKey
	}
	if o.CaptionKey != "" {
		k.Caption, k.captionExplicit = o.CaptionKey, true
	}
	return k, nil
}

// Row is one parsed row of a manifest.
type Row struct {
	Line      int    // 1-based line (CSV: record) number, for messages
	Image     string // as written, not resolved
	Caption   string
	Label     string
	Action    string    // path of a .npy
	Inline    []float32 // an inline action (JSON Lines)
	HasInline bool
	Err       error // the row could not be parsed
}

// MaxLine bounds a manifest line.
const MaxLine = 1 << 20

// ParseCSV parses a CSV manifest with a header row. It returns the rows
// and the header; a malformed record is a Row with Err set.
func ParseCSV(r io.Reader, k Keys) (rows []Row, header []string, err error) {
	cr := csv.NewReader(r)
	cr.Comma = k.Separator
	cr.LazyQuotes = true
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	header, err = cr.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("manifest: header: %w", err)
	}
	col := func(name string) int { return slices.Index(header, name) }
	ci, cc, cl, ca := col(k.Image), col(k.Caption), col(k.Label), col(k.Action)
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return nil, nil, fmt.Errorf("manifest: %w", err)
			}
			rows = append(rows, Row{Line: pe.StartLine, Err: err})
			continue
		}
		line, _ := cr.FieldPos(0)
		row := Row{Line: line}
		if len(rec) != len(header) {
			row.Err = fmt.Errorf("record on line %d has %d fields, the header %d", line, len(rec), len(header))
			rows = append(rows, row)
			continue
		}
		get := func(i int) string {
			if i < 0 {
				return ""
			}
			return rec[i]
		}
		row.Image, row.Caption, row.Label, row.Action = get(ci), get(cc), get(cl), get(ca)
		rows = append(rows, row)
	}
	return rows, header, nil
}

// ParseJSONL parses a JSON Lines manifest. It returns the rows and the keys
// seen in any object; a line that is not an object is a Row with Err set.
func ParseJSONL(r io.Reader, k Keys) (rows []Row, keys []string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, MaxLine)
	seen := map[string]bool{}
	for n := 1; sc.Scan(); n++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		row := Row{Line: n}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err != nil {
			row.Err = fmt.Errorf("line %d: %w", n, err)
			rows = append(rows, row)
			continue
		}
		for key := range obj {
			seen[key] = true
		}
		str := func(key string) (string, error) {
			raw, ok := obj[key]
			if !ok || key == "" {
				return "", nil
			}
			var s string
			if err := json.Unmarshal(raw, &s); err == nil {
				return s, nil
			}
			var v json.Number
			if err := json.Unmarshal(raw, &v); err == nil {
				return v.String(), nil
			}
			return "", fmt.Errorf("line %d: %q is neither a string nor a number", n, key)
		}
		var errs []error
		var e error
		row.Image, e = str(k.Image)
		errs = append(errs, e)
		row.Caption, e = str(k.Caption)
		errs = append(errs, e)
		row.Label, e = str(k.Label)
		errs = append(errs, e)
		if raw, ok := obj[k.Action]; ok && k.Action != "" {
			var arr []float64
			if json.Unmarshal(raw, &arr) == nil {
				row.HasInline = true
				for _, v := range arr {
					row.Inline = append(row.Inline, float32(v))
				}
			} else {
				row.Action, e = str(k.Action)
				errs = append(errs, e)
			}
		}
		row.Err = errors.Join(errs...)
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		return rows, nil, fmt.Errorf("manifest: %w", err)
	}
	for key := range seen {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return rows, keys, nil
}

// Source is a manifest of samples.
type Source struct {
	file    string
	dir     string
	rows    []Row
	labels  []int // per row, −1 when absent or bad
	classes []string
	fields  []dataset.Field
	opts    dataset.OpenOptions
}

// Open reads the manifest file. A file that does not exist, has no image
// column nor caption column, or has no row is an error that names the
// columns looked for and those found.
func Open(file string, opts dataset.OpenOptions) (*Source, error) {
	k, err := keysOf(opts)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	defer f.Close()
	var (
		rows []Row
		cols []string
	)
	if strings.HasSuffix(strings.ToLower(file), ".jsonl") {
		rows, cols, err = ParseJSONL(f, k)
	} else {
		rows, cols, err = ParseCSV(f, k)
	}
	if err != nil {
		return nil, fmt.Errorf("manifest: %s: %w", file, err)
	}
	s := &Source{file: file, dir: filepath.Dir(file), rows: rows, opts: opts}
	has := func(c string) bool { return c != "" && slices.Contains(cols, c) }
	if has(k.Image) {
		s.fields = append(s.fields, dataset.FieldImage)
	}
	if has(k.Caption) {
		s.fields = append(s.fields, dataset.FieldText)
	} else if k.captionExplicit {
		return nil, fmt.Errorf("manifest: %s has no caption column %q (columns: %q)", file, k.Caption, cols)
	}
	if len(s.fields) == 0 {
		return nil, fmt.Errorf("manifest: %s has neither the image column %q nor the caption column %q (columns: %q)", file, k.Image, k.Caption, cols)
	}
	for _, c := range []struct {
		key   string
		field dataset.Field
	}{{k.Label, dataset.FieldLabel}, {k.Action, dataset.FieldAction}} {
		if c.key == "" {
			continue
		}
		if !has(c.key) {
			return nil, fmt.Errorf("manifest: %s has no column %q (columns: %q)", file, c.key, cols)
		}
		s.fields = append(s.fields, c.field)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("manifest: %s has no row after its header", file)
	}
	s.labels = make([]int, len(rows))
	if k.Label != "" {
		s.assignLabels()
	}
	return s, nil
}

// assignLabels reads the label column: integers when every label is one,
// else names, sorted, indexed.
func (s *Source) assignLabels() {
	ints := true
	names := map[string]bool{}
	for _, r := range s.rows {
		if r.Err != nil || r.Label == "" {
			continue
		}
		names[r.Label] = true
		if v, err := strconv.Atoi(r.Label); err != nil || v < 0 {
			ints = false
		}
	}
	if !ints {
		for n := range names {
			s.classes = append(s.classes, n)
		}
		slices.Sort(s.classes)
	}
	for i, r := range s.rows {
		s.labels[i] = -1
		if r.Err != nil || r.Label == "" {
			continue
		}
		if ints {
			s.labels[i], _ = strconv.Atoi(r.Label)
		} else {
			s.labels[i], _ = slices.BinarySearch(s.classes, r.Label)
		}
	}
}

// Name is "csv:FILE".
func (s *Source) Name() string { return "csv:" + s.file }

// Len is the number of rows.
func (s *Source) Len() int { return len(s.rows) }

// Fields are those whose columns the manifest has.
func (s *Source) Fields() []dataset.Field { return s.fields }

// Classes are the label names in label order when the labels are names,
// nil when they are integers.
func (s *Source) Classes() []string { return slices.Clone(s.classes) }

func (s *Source) resolve(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(s.dir, p)
}

// Sample reads row i: its image and action files.
func (s *Source) Sample(ctx context.Context, i int, dst *dataset.Sample) error {
	if i < 0 || i >= len(s.rows) {
		return fmt.Errorf("manifest: %s: sample %d out of range [0, %d)", s.file, i, len(s.rows))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &s.rows[i]
	dst.Reset()
	dst.Index = i
	dst.Key = fmt.Sprintf("%s:%d", filepath.Base(s.file), r.Line)
	badf := func(reason string, err error) error {
		return &dataset.BadSample{Reason: reason, Key: dst.Key, Err: err}
	}
	if r.Err != nil {
		return badf("bad-row", r.Err)
	}
	for _, f := range s.fields {
		switch f {
		case dataset.FieldImage:
			if r.Image == "" {
				return badf("missing-image", nil)
			}
			b, err := os.ReadFile(s.resolve(r.Image))
			if err != nil {
				return badf("unreadable-file", err)
			}
			if dst.Image, err = dataset.DecodeImage(b, dst.Key, s.opts.Background); err != nil {
				return err
			}
		case dataset.FieldText:
			if dst.Text = strings.TrimSpace(r.Caption); dst.Text == "" {
				return badf("missing-text", nil)
			}
		case dataset.FieldLabel:
			if dst.Label = s.labels[i]; dst.Label < 0 {
				return badf("missing-label", fmt.Errorf("label %q", r.Label))
			}
		case dataset.FieldAction:
			if r.HasInline {
				dst.Action = append(dst.Action, r.Inline...)
				dst.ActionShape = append(dst.ActionShape, len(r.Inline))
			} else {
				if r.Action == "" {
					return badf("missing-action", nil)
				}
				b, err := os.ReadFile(s.resolve(r.Action))
				if err != nil {
					return badf("unreadable-file", err)
				}
				a, err := npy.Decode(b)
				if err != nil {
					return badf("bad-npy", err)
				}
				dst.Action = a.Float32(dst.Action)
				dst.ActionShape = append(dst.ActionShape, a.Shape...)
			}
			if len(dst.Action) == 0 {
				return badf("missing-action", fmt.Errorf("empty action"))
			}
			for j, v := range dst.Action {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					return badf("non-finite-action", fmt.Errorf("value %d is %v", j, v))
				}
			}
		}
	}
	return nil
}

package rundir

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// MaxMetricLine bounds one line of metrics.jsonl.
const MaxMetricLine = 1 << 20

// DecodeMetrics decodes a metrics.jsonl stream: one Metric per line, blank
// lines ignored. Every line must be a JSON object with a "step" (not
// negative) and a "loss". A last line without its newline that is not
// valid JSON (a line being written, or a run killed while writing it) is
// dropped and counted in truncated; any other line that does not decode is
// an error naming its line number, and no lines are returned with it.
func DecodeMetrics(r io.Reader) (ms []Metric, truncated int, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	for line := 1; ; line++ {
		b, err := readLine(br)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, fmt.Errorf("metrics line %d: %w", line, err)
		}
		last := errors.Is(err, io.EOF)
		complete := len(b) > 0 && b[len(b)-1] == '\n'
		if t := bytes.TrimSpace(b); len(t) > 0 {
			m, derr := decodeMetric(t)
			if derr != nil {
				var torn *syntaxOrType
				if last && !complete && errors.As(derr, &torn) {
					return ms, 1, nil
				}
				return nil, 0, fmt.Errorf("metrics line %d: %w", line, derr)
			}
			ms = append(ms, m)
		}
		if last {
			return ms, 0, nil
		}
	}
}

// syntaxOrType marks a line that is not a JSON object of the record's
// types, as opposed to one that is but lacks a field.
type syntaxOrType struct{ err error }

func (e *syntaxOrType) Error() string { return e.err.Error() }
func (e *syntaxOrType) Unwrap() error { return e.err }

// decodeMetric decodes one line and checks that it is a metrics record.
func decodeMetric(b []byte) (Metric, error) {
	var m Metric
	if err := json.Unmarshal(b, &m); err != nil {
		return Metric{}, &syntaxOrType{err}
	}
	var present struct {
		Step, Loss json.RawMessage
	}
	if err := json.Unmarshal(b, &present); err != nil {
		return Metric{}, &syntaxOrType{err}
	}
	if isNull(present.Step) || isNull(present.Loss) {
		return Metric{}, errors.New(`no "step" or no "loss"`)
	}
	if m.Step < 0 {
		return Metric{}, fmt.Errorf("negative step %d", m.Step)
	}
	return m, nil
}

func isNull(r json.RawMessage) bool { return len(r) == 0 || string(r) == "null" }

// readLine reads one line, newline included, of at most MaxMetricLine bytes.
func readLine(br *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		chunk, err := br.ReadSlice('\n')
		out = append(out, chunk...)
		if len(out) > MaxMetricLine {
			return nil, fmt.Errorf("line longer than %d bytes", MaxMetricLine)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return out, err
	}
}

// DecodeMetricsSkipping decodes a metrics.jsonl stream like
// DecodeMetrics but skips, and counts in bad, every line that is not a
// metrics record instead of failing: for monitors of a live run and for
// figures that must survive a damaged line. Only a read error or a line
// longer than MaxMetricLine is an error.
func DecodeMetricsSkipping(r io.Reader) (ms []Metric, bad int, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	for line := 1; ; line++ {
		b, err := readLine(br)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, fmt.Errorf("metrics line %d: %w", line, err)
		}
		if t := bytes.TrimSpace(b); len(t) > 0 {
			if m, derr := decodeMetric(t); derr == nil {
				ms = append(ms, m)
			} else {
				bad++
			}
		}
		if errors.Is(err, io.EOF) {
			return ms, bad, nil
		}
	}
}

// ReadMetrics reads run's metrics.jsonl with DecodeMetrics. A run that
// has not logged yet (no file) has no lines; the error then wraps
// fs.ErrNotExist.
func ReadMetrics(run string) (ms []Metric, truncated int, err error) {
	f, err := os.Open(MetricsPath(run))
	if err != nil {
		return nil, 0, fmt.Errorf("metrics: %w", err)
	}
	defer f.Close()
	ms, truncated, err = DecodeMetrics(f)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", MetricsPath(run), err)
	}
	return ms, truncated, nil
}

// ReadMetricsSkipping reads run's metrics.jsonl with
// DecodeMetricsSkipping.
func ReadMetricsSkipping(run string) (ms []Metric, bad int, err error) {
	f, err := os.Open(MetricsPath(run))
	if err != nil {
		return nil, 0, fmt.Errorf("metrics: %w", err)
	}
	defer f.Close()
	ms, bad, err = DecodeMetricsSkipping(f)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", MetricsPath(run), err)
	}
	return ms, bad, nil
}

// History orders metrics by step and keeps, for a step recorded more than
// once, the line written last.
func History(ms []Metric) []Metric {
	last := map[int64]int{}
	for i, m := range ms {
		if m.Eval == nil { // an evaluation's line is not the step's
			last[m.Step] = i
		}
	}
	out := make([]Metric, 0, len(last))
	for i, m := range ms {
		if j, ok := last[m.Step]; ok && j == i {
			out = append(out, m)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Step < out[j].Step })
	return out
}

// LastWins maps each step to its line written last.
func LastWins(ms []Metric) map[int64]Metric {
	out := make(map[int64]Metric, len(ms))
	for _, m := range ms {
		if m.Eval == nil {
			out[m.Step] = m
		}
	}
	return out
}

// Evaluations returns the lines that hold an evaluation (--eval-every), in
// order.
func Evaluations(ms []Metric) []Metric {
	var out []Metric
	for _, m := range ms {
		if m.Eval != nil {
			out = append(out, m)
		}
	}
	return out
}

// Losses maps each step to its loss, the line written last winning.
func Losses(ms []Metric) map[int64]float64 {
	out := make(map[int64]float64, len(ms))
	for _, m := range ms {
		out[m.Step] = m.Loss
	}
	return out
}

// MetricsWriter appends Metric lines to a run's metrics.jsonl. It is not
// safe for concurrent use.
type MetricsWriter struct {
	f   *os.File
	enc *json.Encoder
}

// CreateMetrics opens run's metrics.jsonl: anew (truncated), or for
// appending when a run continues (appendTo). run must exist.
func CreateMetrics(run string, appendTo bool) (*MetricsWriter, error) {
	mode := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if appendTo {
		mode = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(MetricsPath(run), mode, 0o644)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &MetricsWriter{f: f, enc: json.NewEncoder(f)}, nil
}

// Write appends m as one line.
func (w *MetricsWriter) Write(m Metric) error {
	if err := w.enc.Encode(m); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Close closes the file.
func (w *MetricsWriter) Close() error {
	if w == nil || w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

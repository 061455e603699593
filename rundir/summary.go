package rundir

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// RawSummary is a summary.json whose configuration is left undecoded.
type RawSummary = Summary[json.RawMessage]

// DecodeSummary decodes the bytes of a summary.json.
func DecodeSummary[C any](b []byte) (*Summary[C], error) {
	var s Summary[C]
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", SummaryFile, err)
	}
	return &s, nil
}

// ReadSummary reads run's summary.json, the configuration undecoded. A
// run that has not finished has none: the error then wraps fs.ErrNotExist.
func ReadSummary(run string) (*RawSummary, error) {
	return ReadSummaryOf[json.RawMessage](run)
}

// ReadSummaryOf reads run's summary.json with its configuration decoded
// into a C.
func ReadSummaryOf[C any](run string) (*Summary[C], error) {
	b, err := os.ReadFile(SummaryPath(run))
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	s, err := DecodeSummary[C](b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", run, err)
	}
	return s, nil
}

// WriteSummary writes s as run's summary.json, atomically.
func WriteSummary[C any](run string, s *Summary[C]) error {
	return WriteJSON(SummaryPath(run), s)
}

// WriteJSON writes v to path atomically as indented JSON with a final
// newline: a temporary file in the same directory, fsync, rename. A reader
// sees the old file or the whole new one, never a part.
func WriteJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	return nil
}

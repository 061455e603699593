package worker

import (
	"encoding/json"
	"fmt"
	"strings"
)

// DefaultMaxBadSteps is how many non-finite steps in a row a distributed
// run skips before it stops.
const DefaultMaxBadSteps = 5

// DefaultMaxSaveFailures is how many periodic checkpoint saves in a row may
// fail (each retried at the next interval) before the run stops.
const DefaultMaxSaveFailures = 3

// RunSpec is what a coordinator hands to every worker of a distributed run:
// the training configuration and the run-wide policies that every rank
// must apply identically. It encodes as the Config's JSON fields plus its
// own, so a plain Config decodes from it.
type RunSpec struct {
	Config
	// MaxBadSteps is how many non-finite steps in a row every rank skips
	// before the run stops with an error (0: DefaultMaxBadSteps).
	MaxBadSteps int `json:"max_bad_steps,omitempty"`
	// MaxSaveFailures is how many periodic saves in a row may fail before
	// every rank stops (0: DefaultMaxSaveFailures).
	MaxSaveFailures int `json:"max_save_failures,omitempty"`
	// Out is the run directory, for workers that are not given their own.
	Out string `json:"out,omitempty"`
}

// EncodeRunSpec encodes s for the coordinator's RunConfig.
func EncodeRunSpec(s RunSpec) ([]byte, error) {
	if s.Out == "" {
		s.Out = s.Config.Out
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode run configuration: %w", err)
	}
	return b, nil
}

// DecodeRunSpec decodes a coordinator's RunConfig.
func DecodeRunSpec(b []byte) (RunSpec, error) {
	var s RunSpec
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("run configuration from the coordinator: %w", err)
	}
	if s.MaxBadSteps < 0 {
		return s, fmt.Errorf("run configuration: --max-bad-steps %d must not be negative", s.MaxBadSteps)
	}
	if s.MaxBadSteps == 0 {
		s.MaxBadSteps = DefaultMaxBadSteps
	}
	if s.MaxSaveFailures < 0 {
		return s, fmt.Errorf("run configuration: --max-save-failures %d must not be negative", s.MaxSaveFailures)
	}
	if s.MaxSaveFailures == 0 {
		s.MaxSaveFailures = DefaultMaxSaveFailures
	}
	s.Config.Out = s.Out
	return s, nil
}

// FingerprintFields names the parts of the configuration that every worker
// of a run must share (the model's shape, the objective, the data, the
// batch, the seed and the optimizer, and a lossy gradient wire format), for
// the coordinator's join check.
// They are the fields of Fingerprint, one entry each.
func (c Config) FingerprintFields() map[string]string {
	hidden := make([]string, len(c.ImageHidden))
	for i, h := range c.ImageHidden {
		hidden[i] = fmt.Sprint(h)
	}
	f := map[string]string{
		"objective":   c.Objective,
		"data":        c.Data,
		"batch":       fmt.Sprint(c.Batch),
		"dim":         fmt.Sprint(c.Dim),
		"hidden":      strings.Join(hidden, ","),
		"text_hidden": fmt.Sprint(c.TextHidden),
		"activation":  c.Activation,
		"layer_norm":  fmt.Sprint(c.LayerNorm),
		"seed":        fmt.Sprint(c.Seed),
		"optimizer":   c.Optimizer,
	}
	if c.lossyGradWire() {
		f["grad_wire"] = c.GradWire
	}
	return f
}

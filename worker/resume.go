package worker

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/infonce/infonce/rundir"
)

// ChangedSetting is a setting a resumed run changed (summary.json's
// changed_settings).
type ChangedSetting = rundir.ChangedSetting

// ChangedSettings lists the settings of the schedule that cfg changes from
// saved, the configuration of the checkpoint a run resumes: the learning
// rate and its schedule, the weight decay and clipping, the temperature and
// the length of the run. They may change on a resume (the fingerprint,
// which must not, covers the model, the data, the batch and the seed); a
// change is reported, never silent.
func ChangedSettings(saved, cfg Config) []ChangedSetting {
	var out []ChangedSetting
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	add := func(name, old, new string) {
		if old != new {
			out = append(out, ChangedSetting{Setting: name, Old: old, New: new})
		}
	}
	add("lr", f(saved.LR), f(cfg.LR))
	add("schedule", saved.Schedule, cfg.Schedule)
	add("min-lr", f(saved.MinLR), f(cfg.MinLR))
	add("warmup", fmt.Sprint(saved.Warmup), fmt.Sprint(cfg.Warmup))
	add("wd", f(saved.WD), f(cfg.WD))
	add("clip-norm", f(saved.ClipNorm), f(cfg.ClipNorm))
	add("temperature", f(saved.Temperature), f(cfg.Temperature))
	add("learn-temperature", fmt.Sprint(saved.LearnTemperature), fmt.Sprint(cfg.LearnTemperature))
	add("steps", fmt.Sprint(saved.Steps), fmt.Sprint(cfg.Steps))
	add("epochs", fmt.Sprint(saved.Epochs), fmt.Sprint(cfg.Epochs))
	return out
}

// changedSince decodes the configuration a checkpoint's manifest holds and
// reports, one warning each, the settings cfg changes.
func changedSince(raw json.RawMessage, cfg Config, from string, log *slog.Logger) []ChangedSetting {
	var saved Config
	if err := json.Unmarshal(raw, &saved); err != nil {
		return nil // restore refuses it with the reason
	}
	changed := ChangedSettings(saved, cfg)
	for _, c := range changed {
		log.Warn("resuming with a changed setting", "setting", c.Setting, "old", c.Old, "new", c.New, "checkpoint", from)
	}
	return changed
}

package rundir

// Breakdown is a step-time breakdown in milliseconds: the phases of one
// training step (sample and build views, encode, gather the embeddings,
// the loss on the global batch, backward, all-reduce of the gradients,
// optimizer step) and their total wall time. A metrics line holds the mean
// over the steps since the previous line, the summary the mean over the run.
type Breakdown struct {
	DataMS      float64 `json:"data_ms"`
	ForwardMS   float64 `json:"forward_ms"`
	GatherMS    float64 `json:"gather_ms"`
	LossMS      float64 `json:"loss_ms"`
	BackwardMS  float64 `json:"backward_ms"`
	ReduceMS    float64 `json:"reduce_ms"` // the gradient all-reduce, waiting for the slowest rank included
	OptimizerMS float64 `json:"optimizer_ms"`
	TotalMS     float64 `json:"total_ms"`
}

// Metric is one line of metrics.jsonl: the state after step Step (counted
// from 0) of the run.
type Metric struct {
	Step             int64   `json:"step"`
	Epoch            int     `json:"epoch"`
	Loss             float64 `json:"loss"`
	LogitScale       float64 `json:"logit_scale"` // s = exp(t)
	LR               float64 `json:"lr"`
	GradNorm         float64 `json:"grad_norm"`
	SamplesPerSecond float64 `json:"samples_per_second"`
	Time             float64 `json:"time"` // Unix seconds
	Workers          int     `json:"workers"`
	Generation       uint64  `json:"generation"`
	// CheckpointFailures counts the checkpoint saves of the run that
	// failed so far (each retried at the next interval).
	CheckpointFailures int `json:"checkpoint_failures,omitempty"`
	// StepTime is the mean breakdown of the steps since the last line.
	StepTime Breakdown `json:"step_time"`
	// BadSamples counts the samples the recording rank could not use so
	// far, by reason, once there is one.
	BadSamples map[string]int64 `json:"bad_samples,omitempty"`
	// Eval is the evaluation after this step (--eval-every), on the lines
	// that have one.
	Eval *Evaluation `json:"eval,omitempty"`
}

// Evaluation holds the scores of the final model; a nil score was not
// measured (the objective or the data has no text tower, for example).
type Evaluation struct {
	ZeroShotTop1 *float64 `json:"zero_shot_top1"`
	ZeroShotTop5 *float64 `json:"zero_shot_top5"`

	RecallI2TAt1   *float64 `json:"recall_i2t_at_1"`
	RecallI2TAt5   *float64 `json:"recall_i2t_at_5"`
	RecallI2TAt10  *float64 `json:"recall_i2t_at_10"`
	RecallT2IAt1   *float64 `json:"recall_t2i_at_1"`
	RecallT2IAt5   *float64 `json:"recall_t2i_at_5"`
	RecallT2IAt10  *float64 `json:"recall_t2i_at_10"`
	MeanRankI2T    *float64 `json:"mean_rank_i2t"`
	MedianRankI2T  *float64 `json:"median_rank_i2t"`
	MeanRankT2I    *float64 `json:"mean_rank_t2i"`
	MedianRankT2I  *float64 `json:"median_rank_t2i"`
	ClassRecallI2T *float64 `json:"class_recall_i2t_at_1"`
	ClassRecallT2I *float64 `json:"class_recall_t2i_at_1"`

	LinearProbeAccuracy float64 `json:"linear_probe_accuracy"`
	PixelProbeAccuracy  float64 `json:"pixel_probe_accuracy"`

	// Vision-language-action retrieval on a validation set with actions:
	// the (image, instruction) pair against every action chunk, and the
	// (image, action chunk) pair against every instruction; the chance
	// level of R@5 is 5/n.
	ActionRecallAt1      *float64 `json:"action_recall_at_1,omitempty"`
	ActionRecallAt5      *float64 `json:"action_recall_at_5,omitempty"`
	ActionRecallAt10     *float64 `json:"action_recall_at_10,omitempty"`
	ActionMedianRank     *float64 `json:"action_median_rank,omitempty"`
	InstructionRecallAt1 *float64 `json:"instruction_recall_at_1,omitempty"`
	InstructionRecallAt5 *float64 `json:"instruction_recall_at_5,omitempty"`
	ActionChanceAt5      *float64 `json:"action_chance_at_5,omitempty"`
	// ActionR2 is the mean over the action's dimensions of the R² of a
	// linear (ridge) probe that predicts a step's action from the frozen
	// fused (image, instruction) embedding, ActionR2PerDim each
	// dimension's; TemporalKendallTau the mean over validation episodes of
	// Kendall's τ between a frame's step and the closeness of its image
	// embedding to the episode's last frame's (1: closer at every step).
	ActionR2           *float64   `json:"action_r2,omitempty"`
	ActionR2PerDim     []*float64 `json:"action_r2_per_dim,omitempty"` // null: a dimension constant on the validation set
	TemporalKendallTau *float64   `json:"temporal_kendall_tau,omitempty"`
	// TaskZeroShotTop1 is the fraction of validation images whose
	// nearest task family is their own, a family's text embedding being
	// the renormalised mean of its prompts' (the data set's tasks.json);
	// TaskProbeAccuracy that of a linear probe of the family on the frozen
	// image embeddings, trained on the training samples.
	TaskZeroShotTop1  *float64 `json:"task_zero_shot_top1,omitempty"`
	TaskProbeAccuracy *float64 `json:"task_probe_accuracy,omitempty"`
	// VLAPlots is what the report's VLA plots need; the end of a run
	// writes it to vla_eval.json (not to summary.json).
	VLAPlots *VLAEval `json:"-"`

	Alignment  *float64 `json:"alignment"`
	Uniformity float64  `json:"uniformity"`
}

// ChangedSetting is a setting that a resumed run changed: its flag's name,
// the checkpoint's value and this run's.
type ChangedSetting struct {
	Setting string `json:"setting"`
	Old     string `json:"old"`
	New     string `json:"new"`
}

// Summary is summary.json. C is the type of the run's configuration: the
// trainer writes its own configuration type, a reader that does not need
// it decodes it as json.RawMessage ([RawSummary]).
type Summary[C any] struct {
	// RunID names the run; its checkpoints carry the same id.
	RunID            string  `json:"run_id,omitempty"`
	Objective        string  `json:"objective"`
	Data             string  `json:"data"`
	Workers          int     `json:"workers"`
	Generation       uint64  `json:"generation"`
	Steps            int64   `json:"steps"`
	Samples          int64   `json:"samples"`
	FinalLoss        float64 `json:"final_loss"`
	FinalLogitScale  float64 `json:"final_logit_scale"`
	SamplesPerSecond float64 `json:"samples_per_second"` // training throughput, evaluation excluded
	TrainSeconds     float64 `json:"train_seconds"`
	EvalSeconds      float64 `json:"eval_seconds"`
	WallSeconds      float64 `json:"wall_seconds"`
	PeakRSSBytes     int64   `json:"peak_rss_bytes"`
	ParamSHA256      string  `json:"param_sha256"`
	// CheckpointFailures counts the checkpoint saves that failed and were
	// retried at the next interval.
	CheckpointFailures int `json:"checkpoint_failures,omitempty"`
	// ChangedSettings are the settings a resumed run changed from those
	// of the checkpoint it continued.
	ChangedSettings []ChangedSetting `json:"changed_settings,omitempty"`
	// StepTime is the mean step-time breakdown of rank 0 over the run.
	StepTime Breakdown `json:"step_time"`
	// BadSamples counts the samples the run could not use, by reason
	// (rank 0's rows), when there were any.
	BadSamples map[string]int64 `json:"bad_samples,omitempty"`
	Evaluation
	Config C `json:"config"`
}

// Package rundir owns the layout and the records of a run directory, the
// --out of a training run:
//
//	RUN/metrics.jsonl            one Metric per logged step, JSON lines
//	RUN/summary.json             the Summary, written once at the end
//	RUN/vla_eval.json            the VLAEval (retrieval curves, PCA of the
//	                             embeddings), written with the summary when
//	                             the validation data has actions
//	RUN/checkpoints/step-…/      the checkpoints (package checkpoint's format)
//
// The trainer writes these files through [MetricsWriter] and
// [WriteSummary]; reports, deployment checks, benchmarks and tests read
// them back through [ReadMetrics], [DecodeMetrics], [ReadSummary] and
// [DecodeSummary]. The record types carry the JSON field names, so a
// field is named in one place only.
//
// metrics.jsonl is append-only and may be read while a run writes it: a
// last line without its newline that does not decode (a line being
// written, or a run killed while writing it) is dropped and counted, any
// other line that is not a metrics record is an error naming its line. A
// step may appear more than once (a run resumed from a checkpoint older
// than its last line, or a new rank 0 logging a step again after the old
// one died); the line written last wins ([History], [Losses]).
//
// The package sits low in the import graph: it imports checkpoint (for the
// names of checkpoint directories) and nothing else of the project.
package rundir

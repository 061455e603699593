// Package lineage proves from a distributed run's records that every global
// batch of every epoch reached the parameters exactly once.
//
// The records are the workers' sample logs (worker.EnvSampleLog,
// worker.Faults.SampleLog: each rank's rows of a step, written just before
// the gradient reduction, and each step it completed or skipped) and rank
// 0's metrics.jsonl, whose last line of a step names the generation that
// completed it. Check finds, for every step, the generation that applied
// it to the parameters, and checks that every rank of that generation
// contributed, that their rows make up one global batch (equal to an
// uninterrupted run's, when given), that every epoch saw each sample once,
// and that no generation completed a step after a later generation had
// started at it (no split brain; with Run.Rollbacks, after it had completed
// a step, by the records' clock: a run may then go back to a checkpoint). A step that failed in one generation
// and ran again in the next counts once: only the generation that
// completed it counts.
//
// The end-to-end tests (package e2e) and `infonce bench chaos` share it.
package lineage

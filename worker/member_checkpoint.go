package worker

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/rundir"
)

// save writes a checkpoint of the state held, step completed steps, and
// announces it to the coordinator. The machine asks rank 0 of the last
// generation only.
func (m *member) save(ctl context.Context, gen uint64, step int64) (string, error) {
	if m.t == nil {
		return "", nil
	}
	dir, err := m.t.Save(ctl, step, gen)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errFatal, err)
	}
	cctx, cancel := context.WithTimeout(ctl, 5*time.Second)
	defer cancel()
	if err := m.client.CommitCheckpoint(cctx, gen, step, dir); err != nil {
		m.log.Warn("checkpoint not announced", "dir", dir, "err", err)
	}
	m.log.Info("checkpoint", "step", step, "dir", dir)
	m.o.Observer.CheckpointSaved(step, dir)
	return dir, nil
}

// shareSave tells every rank of ring how rank 0's periodic save went: rank
// 0 broadcasts the count of saves in a row that failed (before+1 when
// saveErr is set, 0 after a save that succeeded) and every rank returns it.
func shareSave(ctx context.Context, ring *allreduce.Ring, before int, saveErr error) (int, error) {
	var buf [8]byte
	if ring.Rank() == 0 {
		n := 0
		if saveErr != nil {
			n = before + 1
		}
		binary.LittleEndian.PutUint64(buf[:], uint64(n))
	}
	if ring.Size() > 1 {
		if err := ring.Broadcast(ctx, buf[:], 0); err != nil {
			return 0, fmt.Errorf("share the result of the checkpoint: %w", err)
		}
	}
	n := binary.LittleEndian.Uint64(buf[:])
	if n > 1<<20 {
		return 0, fmt.Errorf("%w: rank 0 sent %d failed saves in a row", errFatal, n)
	}
	return int(n), nil
}

// finish ends the run on rank 0: it saves the final checkpoint, reports
// the end, evaluates and writes summary.json.
func (m *member) finish(ctl context.Context, ring *allreduce.Ring, gen uint64) (*Summary, bool, error) {
	t := m.t
	if m.rec == nil {
		// Without its metrics rank 0 cannot write the summary; it stays
		// a member, as the other ranks do.
		return nil, false, nil
	}
	next, _ := m.mach.Next()
	// The throughput is the training's, as a single process reports it:
	// the final checkpoint and the end's round trip do not count.
	trainSeconds := (time.Since(m.started) - m.evalTime).Seconds()
	samplesPerSecond := m.rec.samplesPerSecond()
	m.rec.finish()
	if _, err := m.save(ctl, gen, next); err != nil {
		// The run ends as a whole: removing rank 0 would only hand the
		// same save to the next rank, one rank after another.
		return nil, false, fmt.Errorf("%w: the final checkpoint (step %d) could not be written: %w; free space in or fix the permissions of %s, then finish the run with --resume latest",
			ErrAborted, next, err, CheckpointDir(m.cfg.Out))
	}
	if err := m.client.Finish(ctl, gen, next); err != nil {
		// The coordinator did not take the end (it restarted, or a newer
		// generation exists): stay a member and finish again in the
		// generation it opens, from this state.
		m.log.Warn("the end of training was not acknowledged; waiting for the coordinator", "err", err)
		return nil, false, nil
	}
	sum := &Summary{
		RunID:     m.cfg.RunID,
		Objective: m.cfg.Objective, Data: m.cfg.Data, Workers: ring.Size(), Generation: gen,
		Steps: t.TotalSteps(), Samples: t.TotalSteps() * int64(m.cfg.Batch),
		FinalLoss: m.rec.last.Loss, FinalLogitScale: m.rec.last.LogitScale,
		SamplesPerSecond:   samplesPerSecond,
		TrainSeconds:       trainSeconds,
		ParamSHA256:        ParamSHA256(t.Model.P.W),
		StepTime:           m.rec.meanStepTime(),
		CheckpointFailures: m.saveFailures,
		ChangedSettings:    m.changedSettings,
		Config:             m.cfg,
	}
	if bad := t.BadSamples(); len(bad) > 0 {
		sum.BadSamples = bad
	}
	if m.o.Evaluate {
		start := time.Now()
		ev, err := t.Evaluate(ctl)
		if err != nil {
			return nil, false, fmt.Errorf("evaluation: %w", err)
		}
		sum.Evaluation, sum.EvalSeconds = ev, time.Since(start).Seconds()
		evaluated(m.o.Observer, t.TotalSteps(), ev)
		if ev.VLAPlots != nil {
			if err := rundir.WriteVLAEval(m.cfg.Out, ev.VLAPlots); err != nil {
				return nil, false, err
			}
		}
	}
	sum.WallSeconds = time.Since(m.started).Seconds()
	sum.PeakRSSBytes = PeakRSS()
	if err := rundir.WriteSummary(m.cfg.Out, sum); err != nil {
		return nil, false, err
	}
	return sum, true, nil
}

// openRecorder opens metrics.jsonl for the rank that records: a fresh run
// starts it anew, a run that continues appends.
func (m *member) openRecorder(workers int) error {
	if m.rec != nil {
		return nil
	}
	if err := os.MkdirAll(m.cfg.Out, 0o755); err != nil {
		return fmt.Errorf("--out %s: %w", m.cfg.Out, err)
	}
	next, _ := m.mach.Next()
	rec, err := openRecorder(m.cfg, m.t.TotalSteps(), workers, Options{Progress: m.o.Progress}, next > 0, next)
	if err != nil {
		return err
	}
	m.rec = rec
	// A rank that becomes rank 0 after the old one died may hold a step
	// that completed on every rank but whose line died with the old
	// rank 0: write it again (the last line of a step wins).
	if m.haveLast && m.last.Step == next-1 {
		if err := rec.step(m.last, m.lastGen); err != nil {
			return err
		}
	}
	return nil
}

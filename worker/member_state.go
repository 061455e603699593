package worker

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/shm"
	"github.com/infonce/infonce/checkpoint"
	"github.com/infonce/infonce/coordinator"
	"github.com/infonce/infonce/worker/membership"
)

// configure builds the trainer from the run configuration the first time;
// it then returns the run's schedule for the machine (nil when the trainer
// existed already).
func (m *member) configure(a coordinator.Assignment) (*membership.Schedule, error) {
	if m.t != nil {
		return nil, nil
	}
	spec, err := DecodeRunSpec(a.Config)
	if err != nil {
		return nil, err
	}
	cfg := spec.Config
	if m.o.Out != "" {
		cfg.Out = m.o.Out
	} else if err := checkNetworkOut(cfg.Out, m.o.OutRoot); err != nil { // security.go
		return nil, err
	}
	if err := checkNetworkData(cfg.Data, cfg.Classes); err != nil { // security.go
		return nil, err
	}
	for _, p := range []string{cfg.DataOptions.ValData, cfg.DataOptions.Templates, cfg.Tokenizer} {
		if p != "" {
			if err := checkNetworkData(p, ""); err != nil {
				return nil, err
			}
		}
	}
	data, err := LoadData(cfg)
	if err != nil {
		return nil, err
	}
	f, all, err := m.o.Faults.withEnv()
	if err != nil {
		return nil, err
	}
	if all.SampleLog != "" && m.samples == nil {
		if m.samples, err = openSampleLog(all.SampleLog); err != nil {
			return nil, err
		}
	}
	t, err := NewTrainerData[float32](cfg, data, m.gradStorage)
	if err != nil {
		return nil, err
	}
	m.spec, m.cfg, m.t, m.faults = spec, cfg, t, f
	if r, ok := m.o.Observer.(RunObserver); ok {
		r.RunConfigured(cfg, len(t.Model.P.G))
	}
	m.hook(t)
	return &membership.Schedule{TotalSteps: t.TotalSteps(), MaxBadSteps: spec.MaxBadSteps,
		ChecksumEvery: int64(cfg.ChecksumEvery), CheckpointEvery: int64(cfg.CheckpointEvery),
		MaxSaveFailures: spec.MaxSaveFailures}, nil
}

// gradStorage gives the trainer its gradient buffer: a SharedVector when
// the data plane may use shared memory, so that rings of workers of this
// machine all-reduce it in place, and plain memory (nil) otherwise or when
// the vector cannot be made. A trainer built again for the same model
// reuses the vector.
func (m *member) gradStorage(n int) ([]float32, error) {
	if dataTransport(m.o.TLSClient != nil, m.o.NoSharedMemory) != allreduce.TransportSHM {
		return nil, nil
	}
	if m.shared != nil {
		if m.shared.Len() == n {
			return m.shared.Floats(), nil
		}
		return nil, nil
	}
	v, err := shm.NewSharedVector(n)
	if err != nil {
		m.log.Warn("the gradient stays in private memory", "err", err)
		return nil, nil
	}
	m.shared = v
	return v.Floats(), nil
}

// hook installs the injected faults and the sample log on a trainer.
func (m *member) hook(t *Trainer[float32]) {
	t.faultHook = m.faults.nanHook()
	t.gradHook = m.faults.dumpHook()
	t.saveHook = m.faults.saveHook()
	if m.samples != nil {
		t.sampleHook = func(step int64, epoch int, local []int) {
			rank, world := m.mach.Rank()
			m.samples.write(SampleRecord{Event: "contribute", Worker: m.o.Name, Generation: m.heldNow().Generation,
				World: world, Rank: rank, Step: step, Epoch: epoch, Indices: local})
		}
	}
}

// startState brings the trainer to the generation's start state: fresh
// from the seed, a checkpoint, or a broadcast from the source rank, which
// then also fixes the step every rank resumes at. It returns the next step
// to run and the count of non-finite steps in a row before it.
func (m *member) startState(ctx context.Context, ring *allreduce.Ring, a coordinator.Assignment) (next int64, bad int, err error) {
	next, bad = m.mach.Next()
	switch a.Start.Kind {
	case coordinator.StartFresh:
		if next != 0 {
			t, err := NewTrainerData[float32](m.cfg, m.t.Data, m.gradStorage)
			if err != nil {
				return 0, 0, err
			}
			m.t.Close()
			m.t, next, bad = t, 0, 0
			m.hook(t)
		}
		return next, bad, nil
	case coordinator.StartCheckpoint:
		if err := checkCheckpointPath(a.Start.CheckpointPath, m.o.OutRoot); err != nil { // security.go
			return 0, 0, fmt.Errorf("%w: start state: %w", errFatal, err)
		}
		c, err := checkpoint.Load(ctx, a.Start.CheckpointPath)
		if err != nil {
			return 0, 0, fmt.Errorf("%w: start state: %w", errFatal, err)
		}
		next, err := m.t.Restore(c)
		if err != nil {
			return 0, 0, fmt.Errorf("%w: start state: %w", errFatal, err)
		}
		m.changedSettings = changedSince(c.Manifest.Config, m.cfg, c.Dir, m.log)
		return next, 0, nil
	case coordinator.StartBroadcast:
		return m.broadcastState(ctx, ring, a.Start.SourceRank, next, bad)
	}
	return 0, 0, fmt.Errorf("%w: unknown start state %v", errFatal, a.Start)
}

// broadcastState hands the source rank's whole training state (next
// step, bad steps in a row) to every rank: first its size, then the
// encoded Snapshot.
func (m *member) broadcastState(ctx context.Context, ring *allreduce.Ring, root int, next int64, bad int) (int64, int, error) {
	var payload []byte
	var header [8]byte
	if ring.Rank() == root {
		mf, blobs, err := m.t.Snapshot(next, ring.Generation())
		if err != nil {
			return 0, 0, err
		}
		// The count of non-finite steps in a row travels with the state,
		// so that every rank stops at the same step.
		mf.Extra[extraBadSteps] = fmt.Sprint(bad)
		if payload, err = encodeState(mf, blobs); err != nil {
			return 0, 0, err
		}
		binary.LittleEndian.PutUint64(header[:], uint64(len(payload)))
	}
	if err := ring.Broadcast(ctx, header[:], root); err != nil {
		return 0, 0, fmt.Errorf("broadcast state size: %w", err)
	}
	n := binary.LittleEndian.Uint64(header[:])
	if bound := min(m.t.stateBound(), maxStateBytes); n > bound {
		return 0, 0, fmt.Errorf("%w: broadcast state of %d bytes is over the %d this model's state can take", errFatal, n, bound)
	}
	if ring.Rank() != root {
		payload = make([]byte, n)
	}
	if err := ring.Broadcast(ctx, payload, root); err != nil {
		return 0, 0, fmt.Errorf("broadcast state: %w", err)
	}
	if ring.Rank() == root {
		return next, bad, nil
	}
	mf, blobs, err := decodeState(payload)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: state from rank %d: %w", errFatal, root, err)
	}
	next, err = m.t.restore(fmt.Sprintf("rank %d", root), mf, func(name string) ([]byte, error) {
		b, ok := blobs[name]
		if !ok {
			return nil, fmt.Errorf("no blob %q", name)
		}
		return b, nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %w", errFatal, err)
	}
	bad = 0
	if v, ok := mf.Extra[extraBadSteps]; ok {
		if _, err := fmt.Sscan(v, &bad); err != nil {
			return 0, 0, fmt.Errorf("%w: state from rank %d: %s %q: %w", errFatal, root, extraBadSteps, v, err)
		}
		if bad < 0 || int64(bad) > next {
			return 0, 0, fmt.Errorf("%w: state from rank %d: %d non-finite steps in a row before step %d", errFatal, root, bad, next)
		}
	}
	return next, bad, nil
}

// extraBadSteps is the manifest entry of a broadcast state that carries
// the count of non-finite steps in a row.
const extraBadSteps = "bad_steps_in_a_row"

package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/infonce/infonce/coordinator"
	"github.com/infonce/infonce/worker/membership"
)

// join joins the run (again, when the worker already holds state) and
// starts the gossip node under the new id.
func (m *member) join(ctx context.Context) error {
	req := m.joinReq
	req.Held = m.heldNow().JoinState(m.jobIDNow())
	id, err := m.client.Join(ctx, req)
	if err != nil {
		return fmt.Errorf("join %s: %w", m.o.Coordinator, err)
	}
	m.log.Info("joined", "worker", id, "coordinator", m.o.Coordinator, "data", req.DataAddr, "held", req.Held != nil)
	// The stream first: the coordinator declares a joined worker without
	// one dead after its WatchGrace; gossip may take a while to settle.
	if err := m.client.StartWatch(); err != nil {
		return err
	}
	m.closeGossip()
	if m.o.GossipBind != "" {
		gc := coordinator.DefaultLocalGossipConfig(id)
		if m.o.GossipLAN {
			gc = coordinator.DefaultLANGossipConfig(id)
		}
		gc.BindAddr, gc.BindPort, gc.AdvertiseAddr = m.o.GossipBind, m.o.GossipPort, m.o.GossipAdvertise
		gc.Seeds, gc.SecretKey, gc.Logger = m.client.GossipSeeds(), m.o.GossipKey, m.log
		g, err := coordinator.StartGossip(gc)
		if err != nil {
			return fmt.Errorf("gossip: %w (a node without the run's --cluster-key is not admitted)", err)
		}
		m.gossip = g
	}
	return nil
}

func (m *member) closeGossip() {
	if m.gossip != nil {
		_ = m.gossip.Close(context.Background(), 200*time.Millisecond)
		m.gossip = nil
	}
}

func (m *member) jobIDNow() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.jobID
}

// control follows the coordinator: it publishes every assignment, and when
// the coordinator no longer knows the worker it joins again, announcing
// the state the worker holds. It returns when the run stopped, ctx ended or
// the coordinator refused the worker.
func (m *member) control(ctx context.Context) {
	var after uint64
	for {
		a, err := m.client.NextAssignment(ctx, after)
		switch {
		case err == nil:
			after = a.Generation
			m.publish(a, nil)
			if a.Action == coordinator.ActionStop {
				return
			}
			continue
		case ctx.Err() != nil:
			m.publish(coordinator.Assignment{}, ctx.Err())
			return
		case errors.Is(err, coordinator.ErrUnknownWorker) && !m.heldNow().Quitting:
			h := m.heldNow()
			m.log.Warn("the coordinator no longer knows this worker (it restarted, or declared the worker dead); joining again",
				"err", err, "held_step", h.Step, "held_gen", h.Generation)
			if err := m.join(ctx); err != nil {
				m.publish(coordinator.Assignment{}, err)
				return
			}
			after = 0
			continue
		}
		m.publish(coordinator.Assignment{}, err)
		return
	}
}

// publish hands an assignment (newer than any before) or the control
// plane's final error to the training loop.
func (m *member) publish(a coordinator.Assignment, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.latestErr = err
	} else if a.Generation > m.latest.Generation {
		m.latest = a
		if a.JobID != "" {
			m.jobID = a.JobID
		}
	} else {
		return
	}
	close(m.changed)
	m.changed = make(chan struct{})
}

// nextAssignment waits for an assignment newer than after.
func (m *member) nextAssignment(ctx context.Context, after uint64) (coordinator.Assignment, error) {
	for {
		m.mu.Lock()
		a, err, changed := m.latest, m.latestErr, m.changed
		m.mu.Unlock()
		if a.Generation > after {
			return a, nil
		}
		if a.Action == coordinator.ActionStop && a.Generation != 0 {
			return coordinator.Assignment{}, fmt.Errorf("after generation %d: %w", after, coordinator.ErrRunStopped)
		}
		if err != nil {
			return coordinator.Assignment{}, err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return coordinator.Assignment{}, ctx.Err()
		}
	}
}

// publishHeld publishes what the machine holds, for a re-join.
func (m *member) publishHeld() {
	h := m.mach.Held()
	m.heldMu.Lock()
	m.held = h
	m.heldMu.Unlock()
}

// heldNow is what the worker holds, as the training loop published it.
func (m *member) heldNow() membership.Held {
	m.heldMu.Lock()
	defer m.heldMu.Unlock()
	return m.held
}

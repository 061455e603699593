package e2e

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/infonce/infonce/internal/testcluster"
	"github.com/infonce/infonce/worker"
)

// killRun is one kill -9 of a worker during a 3-worker run (MinWorkers 2).
type killRun struct {
	name string
	// pick chooses the victim once training is under way; nil means the
	// victim kills itself (env).
	pick func(c *cluster, r *rand.Rand) *proc
	env  map[int][]string // per worker index (1-based)
}

// TestKill kills one worker with SIGKILL in the middle of training: a
// worker chosen at random at a random moment, rank 0, and a worker inside
// its gradient all-reduce. The survivors must carry on in a new generation
// from a survivor's state, re-running the interrupted step, with every loss
// equal to the uninterrupted run's and every sample of every epoch seen
// exactly once.
func TestKill(t *testing.T) {
	needSetup(t)
	const steps = 150
	ref := referenceRun(t, steps)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 7))
	for _, kr := range []killRun{
		{name: "random", pick: func(c *cluster, r *rand.Rand) *proc {
			p, _ := c.RankOf(r.IntN(3))
			return p
		}},
		{name: "rank0", pick: func(c *cluster, r *rand.Rand) *proc {
			p, _ := c.RankOf(0)
			return p
		}},
		{name: "in-allreduce", env: map[int][]string{2: {worker.EnvFaultKillInAllReduce + "=" + fmt.Sprint(40+r.IntN(20))}}},
	} {
		t.Run(kr.name, func(t *testing.T) {
			c := newCluster(t, clusterOpts{workers: 3, min: 2, steps: steps})
			var victim *proc
			for i := 1; i <= 3; i++ {
				p := c.AddWorker(kr.env[i])
				if kr.env[i] != nil {
					victim = p
				}
			}
			var killAt time.Time
			var gen uint64
			if kr.pick != nil {
				// A random moment between steps 20 and 60.
				c.WaitStep(int64(20+r.IntN(40)), 90*time.Second)
				time.Sleep(time.Duration(r.IntN(15)) * time.Millisecond)
				victim = kr.pick(c, r)
				if victim == nil {
					c.Dump()
					t.Fatal("no worker holds the rank")
				}
				ms := testcluster.ReadMetrics(t, c.Out)
				gen = ms[len(ms)-1].Generation
				killAt = time.Now()
				victim.Kill()
			} else {
				select {
				case <-victim.Done():
				case <-time.After(90 * time.Second):
					c.Dump()
					t.Fatal("the worker did not kill itself")
				}
				killAt = time.Now()
				ms := testcluster.ReadMetrics(t, c.Out)
				gen = ms[len(ms)-1].Generation
			}
			lastBefore := testcluster.ReadMetrics(t, c.Out)
			m, ok := c.FirstStepAfter(gen, 30*time.Second)
			if !ok {
				c.Dump()
				t.Fatal("no step completed in a new generation within 30s of the kill")
			}
			recovery := unixTime(m.Time).Sub(killAt)
			c.WaitDone(2*time.Minute, victim.Name)
			worst := compareLosses(t, c.Dir, c.Out, ref, 1e-4, nil)
			lineage(t, c.Dir, c.Out, steps, ref.batch, nil)
			redone := int64(0)
			if len(lastBefore) > 0 {
				redone = max(0, lastBefore[len(lastBefore)-1].Step-m.Step+1)
			}
			t.Logf("FIGURE kill/%s: victim %s, recovery %v (kill to the next completed step, generation %d -> %d, world %d), steps redone %d, worst |Δloss| %.2g",
				kr.name, victim.Name, recovery.Round(time.Millisecond), gen, m.Generation, m.Workers, redone, worst)
			if m.Workers != 2 {
				t.Errorf("the new generation has %d workers, want 2", m.Workers)
			}
			if redone > 1 {
				t.Errorf("%d steps that had completed before the kill ran again, want at most the one in flight", redone)
			}
			if recovery > 10*time.Second {
				t.Errorf("recovery took %v", recovery)
			}
		})
	}
}

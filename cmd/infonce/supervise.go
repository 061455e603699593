package main

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"sync"
	"syscall"
)

// supervision is the decision logic of the local launcher's worker
// supervisor, without I/O: which worker exits are replaced by a new
// process, and the tally of lost and restarted workers.
type supervision struct {
	budget    int  // restarts left
	stopping  bool // a stop was requested: nothing is restarted
	lost      int  // workers that exited with an error
	restarted int  // replacements started
}

// exited records the exit of a worker (failed: with an error) while the
// training is finished or not, and reports whether to start a replacement:
// only for a failure, before the training finished, with restarts left and
// no stop requested.
func (s *supervision) exited(failed, finished bool) (restart bool) {
	if !failed {
		return false
	}
	s.lost++
	if finished || s.stopping || s.budget <= 0 {
		return false
	}
	s.budget--
	s.restarted++
	return true
}

// supervisor runs n local worker processes with the decisions of
// supervision: start is the I/O of starting worker i's incarnation-th
// process, finished asks the coordinator whether the training is done.
type supervisor struct {
	start    func(i, incarnation int) (*exec.Cmd, error)
	finished func() bool
	restarts int
	log      *slog.Logger

	mu       sync.Mutex
	st       supervision
	children []*exec.Cmd
	done     bool // the training finished, as seen at the last exit
}

// supervisorSummary is what the launch reports of its workers.
type supervisorSummary struct {
	lost, restarted int
	finished        bool
}

func (s *supervisor) summary() supervisorSummary {
	s.mu.Lock()
	defer s.mu.Unlock()
	return supervisorSummary{lost: s.st.lost, restarted: s.st.restarted, finished: s.done || s.finished()}
}

// run starts the n workers and waits for all of them (and their
// replacements) to exit, forwarding a stop request on ctx to every running
// worker as SIGTERM. It returns the errors of the workers that failed and
// were not replaced.
func (s *supervisor) run(ctx context.Context, n int) []error {
	s.st = supervision{budget: s.restarts}
	s.children = make([]*exec.Cmd, n)
	for i := range n {
		c, err := s.start(i, 0)
		if err != nil {
			for _, started := range s.children[:i] {
				_ = started.Process.Kill()
				_ = started.Wait()
			}
			return []error{fmt.Errorf("start worker %d: %w", i, err)}
		}
		s.children[i] = c
	}
	// A stop request (SIGINT, SIGTERM) goes to every worker: they finish
	// the step, rank 0 saves a checkpoint, and they exit.
	forward := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.st.stopping = true
		for _, c := range s.children {
			_ = c.Process.Signal(syscall.SIGTERM)
		}
	})
	defer forward()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.watch(i)
		}()
	}
	wg.Wait()
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// watch waits for worker i's processes in turn, replacing them as
// supervision decides, and returns the error of the last one.
func (s *supervisor) watch(i int) error {
	s.mu.Lock()
	c := s.children[i]
	s.mu.Unlock()
	for incarnation := 0; ; incarnation++ {
		err := c.Wait()
		finished := err != nil && s.finished()
		s.mu.Lock()
		s.done = s.done || finished
		restart := s.st.exited(err != nil, finished)
		s.mu.Unlock()
		if !restart {
			if err != nil {
				return fmt.Errorf("worker %d: %w", i, err)
			}
			return nil
		}
		s.log.Warn("restarting a worker that died", "worker", i, "err", err, "incarnation", incarnation+1)
		next, serr := s.start(i, incarnation+1)
		if serr != nil {
			return fmt.Errorf("worker %d died (%v) and could not be restarted: %w", i, err, serr)
		}
		s.mu.Lock()
		s.children[i] = next
		stopping := s.st.stopping
		s.mu.Unlock()
		if stopping {
			_ = next.Process.Signal(syscall.SIGTERM)
		}
		c = next
	}
}

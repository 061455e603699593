package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// runWaitMeter samples, every 50 ms, how long the threads of each watched
// process have waited on a run queue: runnable, but with another task
// holding the core (the second field of /proc/PID/task/TID/schedstat, in
// nanoseconds). A timing test uses it to tell a slow result from a machine
// that did not give the processes their cores, since the test command runs
// packages side by side.
type runWaitMeter struct {
	mu      sync.Mutex
	pids    []int
	samples []runWaitSample
	stop    chan struct{}
	done    chan struct{}
}

type runWaitSample struct {
	at   time.Time
	wait map[int]time.Duration // by pid; a pid missing could not be read
}

func startRunWaitMeter() *runWaitMeter {
	m := &runWaitMeter{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			m.sample()
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

// watch adds a process to the meter.
func (m *runWaitMeter) watch(pid int) {
	m.mu.Lock()
	m.pids = append(m.pids, pid)
	m.mu.Unlock()
	m.sample()
}

// close stops the sampling goroutine and waits for it.
func (m *runWaitMeter) close() {
	close(m.stop)
	<-m.done
}

func (m *runWaitMeter) sample() {
	m.mu.Lock()
	pids := append([]int(nil), m.pids...)
	m.mu.Unlock()
	s := runWaitSample{at: time.Now(), wait: map[int]time.Duration{}}
	for _, pid := range pids {
		if d, err := procRunWait(pid); err == nil {
			s.wait[pid] = d
		}
	}
	m.mu.Lock()
	m.samples = append(m.samples, s)
	m.mu.Unlock()
}

// share returns the fraction of the wall time in [from, to] that process
// pid spent waiting for a core, between the last sample at or before from
// and the first at or after to; ok is false when the meter has no such
// pair of readings.
func (m *runWaitMeter) share(pid int, from, to time.Time) (share float64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var a, b *runWaitSample
	for i := range m.samples {
		s := &m.samples[i]
		if _, has := s.wait[pid]; !has {
			continue
		}
		if !s.at.After(from) {
			a = s
		}
		if !s.at.Before(to) && b == nil {
			b = s
		}
	}
	if a == nil || b == nil || !b.at.After(a.at) {
		return 0, false
	}
	return float64(b.wait[pid]-a.wait[pid]) / float64(b.at.Sub(a.at)), true
}

// procRunWait sums the run-queue wait of every thread of process pid.
// Threads that have exited take their share with them, which only makes
// the figure smaller.
func procRunWait(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("run wait of %d: %w", pid, err)
	}
	var sum time.Duration
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, task.Name(), "schedstat"))
		if err != nil {
			continue // the thread is gone
		}
		f := bytes.Fields(b)
		if len(f) < 2 {
			return 0, fmt.Errorf("run wait of %d: schedstat %q", pid, b)
		}
		ns, err := strconv.ParseInt(string(f[1]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("run wait of %d: %w", pid, err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

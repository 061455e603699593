package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Environment variables that inject faults into a worker process and record
// what it trained on, for the end-to-end reliability tests. They are read
// once, when the worker builds its trainer; an unset variable does nothing.
const (
	// EnvFaultNaNSteps lists global steps ("5,6") whose local gradient this
	// worker corrupts with a NaN before the reduction.
	EnvFaultNaNSteps = "INFONCE_FAULT_NAN_STEPS"
	// EnvFaultKillInAllReduce names a global step: the worker sends itself
	// SIGKILL while the step's gradient all-reduce is in flight.
	EnvFaultKillInAllReduce = "INFONCE_FAULT_KILL_IN_ALLREDUCE"
	// EnvSampleLog names a file to which the worker appends one JSON line
	// per step it contributes to (its sample indices, before the
	// reduction) and one per step it completes or skips. Give every
	// worker process its own file.
	EnvSampleLog = "INFONCE_SAMPLE_LOG"
)

// SampleRecord is one line of the sample log (EnvSampleLog).
type SampleRecord struct {
	// Event is "contribute" (the rank's rows of the step, written just
	// before the reduction), "done" (the step completed on this rank) or
	// "skipped" (the step's summed loss or gradient was not finite).
	Event      string `json:"event"`
	Worker     string `json:"worker"`
	Generation uint64 `json:"gen"`
	World      int    `json:"world"`
	Rank       int    `json:"rank"`
	Step       int64  `json:"step"`
	Epoch      int    `json:"epoch"`
	// Indices are the data-set indices of the rank's rows ("contribute").
	Indices []int `json:"idx,omitempty"`
	// UnixNano is the wall time of the event.
	UnixNano int64 `json:"t"`
}

// sampleLog appends SampleRecords to a file, one write per line so that a
// killed process leaves whole lines only (but for the last).
type sampleLog struct {
	mu sync.Mutex
	f  *os.File
}

func openSampleLog(path string) (*sampleLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvSampleLog, err)
	}
	return &sampleLog{f: f}, nil
}

func (l *sampleLog) write(r SampleRecord) {
	if l == nil {
		return
	}
	r.UnixNano = time.Now().UnixNano()
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.f.Write(append(b, '\n'))
}

func (l *sampleLog) close() {
	if l != nil {
		l.f.Close()
	}
}

// faults are the injected faults of one worker process.
type faults struct {
	nanSteps      map[int64]bool
	killAllReduce int64 // -1: none
}

// faultsFromEnv reads the fault variables.
func faultsFromEnv() (faults, error) {
	f := faults{killAllReduce: -1}
	if v := os.Getenv(EnvFaultNaNSteps); v != "" {
		f.nanSteps = map[int64]bool{}
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil || n < 0 {
				return f, fmt.Errorf("%s=%q: want a comma-separated list of steps", EnvFaultNaNSteps, v)
			}
			f.nanSteps[n] = true
		}
	}
	if v := os.Getenv(EnvFaultKillInAllReduce); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return f, fmt.Errorf("%s=%q: want a step", EnvFaultKillInAllReduce, v)
		}
		f.killAllReduce = n
	}
	return f, nil
}

// nanHook corrupts one gradient entry at the listed steps.
func (f faults) nanHook() func(step int64, g []float32) {
	if len(f.nanSteps) == 0 {
		return nil
	}
	return func(step int64, g []float32) {
		if f.nanSteps[step] && len(g) > 0 {
			g[len(g)/2] = float32(math.NaN())
		}
	}
}

// killComm is a Comm that kills its own process in the middle of the
// gradient all-reduce of one step: the reduction starts, and a moment later
// (while its chunks are in flight) the process receives SIGKILL.
type killComm struct {
	Comm[float32]
	step   *int64 // the step being run, set by the training loop
	atStep int64
	delay  time.Duration
}

func (c killComm) AllReduce(ctx context.Context, buf []float32) error {
	if *c.step == c.atStep && len(buf) > 2 { // the gradient, not the loss pair
		go func() {
			time.Sleep(c.delay)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}()
	}
	return c.Comm.AllReduce(ctx, buf)
}

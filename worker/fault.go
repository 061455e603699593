package worker

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/infonce/infonce/allreduce"
)

// Environment variables that inject faults into a worker process and record
// what it trained on, for the end-to-end reliability tests. Only a binary
// built with the build tag faultinject reads them (fault_env.go); in any
// other build they do nothing, and in-process tests give the same faults
// through Options.Faults and MemberOptions.Faults. They are read once, when
// the worker builds its trainer; an unset variable does nothing.
const (
	// EnvFaultNaNSteps lists global steps ("5,6") whose local gradient this
	// worker corrupts with a NaN before the reduction (Faults.NaNSteps).
	EnvFaultNaNSteps = "INFONCE_FAULT_NAN_STEPS"
	// EnvFaultKillInAllReduce names a global step: the worker sends itself
	// SIGKILL while the step's gradient all-reduce is in flight
	// (Faults.KillInAllReduce).
	EnvFaultKillInAllReduce = "INFONCE_FAULT_KILL_IN_ALLREDUCE"
	// EnvSampleLog names a file to which the worker appends one JSON line
	// per step it contributes to (its sample indices, before the
	// reduction) and one per step it completes or skips. Give every
	// worker process its own file (Faults.SampleLog).
	EnvSampleLog = "INFONCE_SAMPLE_LOG"
	// EnvDumpGrads is "DIR:STEPS" (STEPS as "0,1"): at each listed global
	// step the worker writes the summed gradient, as every rank holds it
	// after the reduction and before clipping, to
	// DIR/grad-step<STEP>-rank<RANK>.f32 (little-endian float32), and the
	// global loss to the .loss file beside it: how the tests compare the
	// gradients of real processes with the single process's
	// (Faults.DumpGradsDir, Faults.DumpGradsSteps).
	EnvDumpGrads = "INFONCE_DUMP_GRADS"
)

// Faults are faults injected into a worker and records of what it trained
// on, for reliability tests. The zero value injects and records nothing.
type Faults struct {
	// NaNSteps are global steps whose local gradient the worker corrupts
	// with a NaN before the reduction.
	NaNSteps []int64
	// KillInAllReduce are global steps while whose gradient all-reduce
	// the worker sends itself SIGKILL (the first one reached ends the
	// process).
	KillInAllReduce []int64
	// DumpGradsDir, when set, receives the summed gradient and the global
	// loss of each step in DumpGradsSteps (see EnvDumpGrads).
	DumpGradsDir   string
	DumpGradsSteps []int64
	// SampleLog names a file to which the worker appends SampleRecords.
	SampleLog string
	// SaveFailSteps are the steps whose checkpoint save fails as on a
	// full disk (ENOSPC), before anything is written.
	SaveFailSteps []int64
	// EvalDelay lengthens each evaluation of --eval-every on the rank that
	// evaluates by this much, as a large validation set would (in-process
	// tests only; no environment variable sets it).
	EvalDelay time.Duration
}

// or fills the fields of f that are not set from g.
func (f Faults) or(g Faults) Faults {
	if len(f.NaNSteps) == 0 {
		f.NaNSteps = g.NaNSteps
	}
	if len(f.KillInAllReduce) == 0 {
		f.KillInAllReduce = g.KillInAllReduce
	}
	if f.DumpGradsDir == "" {
		f.DumpGradsDir, f.DumpGradsSteps = g.DumpGradsDir, g.DumpGradsSteps
	}
	if f.SampleLog == "" {
		f.SampleLog = g.SampleLog
	}
	if len(f.SaveFailSteps) == 0 {
		f.SaveFailSteps = g.SaveFailSteps
	}
	return f
}

// withEnv is f with what the fault variables add (in a build with the
// faultinject tag; nothing otherwise), compiled for the hooks.
func (f Faults) withEnv() (faults, Faults, error) {
	env, err := faultsFromEnv()
	if err != nil {
		return faults{}, Faults{}, err
	}
	all := f.or(env)
	return all.compile(), all, nil
}

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

// faults are the injected faults of one worker process, as the hooks use
// them.
type faults struct {
	nanSteps  map[int64]bool
	killSteps map[int64]bool
	dumpDir   string
	dumpSteps map[int64]bool
	saveFail  map[int64]bool
}

// saveHook fails the saves of the listed steps as a full disk does.
func (f faults) saveHook() func(done int64) error {
	if len(f.saveFail) == 0 {
		return nil
	}
	return func(done int64) error {
		if f.saveFail[done] {
			return fmt.Errorf("injected fault: %w", syscall.ENOSPC)
		}
		return nil
	}
}

func stepSet(steps []int64) map[int64]bool {
	if len(steps) == 0 {
		return nil
	}
	m := make(map[int64]bool, len(steps))
	for _, s := range steps {
		m[s] = true
	}
	return m
}

// compile turns f into the hooks' sets.
func (f Faults) compile() faults {
	c := faults{nanSteps: stepSet(f.NaNSteps), killSteps: stepSet(f.KillInAllReduce), saveFail: stepSet(f.SaveFailSteps)}
	if f.DumpGradsDir != "" {
		c.dumpDir, c.dumpSteps = f.DumpGradsDir, stepSet(f.DumpGradsSteps)
	}
	return c
}

// parseFaults reads the fault variables through getenv.
func parseFaults(getenv func(string) string) (Faults, error) {
	var f Faults
	steps := func(v string) ([]int64, bool) {
		var out []int64
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil || n < 0 {
				return nil, false
			}
			out = append(out, n)
		}
		return out, true
	}
	if v := getenv(EnvFaultNaNSteps); v != "" {
		var ok bool
		if f.NaNSteps, ok = steps(v); !ok {
			return f, fmt.Errorf("%s=%q: want a comma-separated list of steps", EnvFaultNaNSteps, v)
		}
	}
	if v := getenv(EnvDumpGrads); v != "" {
		dir, list, ok := strings.Cut(v, ":")
		if !ok || dir == "" {
			return f, fmt.Errorf("%s=%q: want DIR:STEPS", EnvDumpGrads, v)
		}
		if f.DumpGradsSteps, ok = steps(list); !ok {
			return f, fmt.Errorf("%s=%q: want DIR and a comma-separated list of steps", EnvDumpGrads, v)
		}
		f.DumpGradsDir = dir
	}
	if v := getenv(EnvFaultKillInAllReduce); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return f, fmt.Errorf("%s=%q: want a step", EnvFaultKillInAllReduce, v)
		}
		f.KillInAllReduce = []int64{n}
	}
	f.SampleLog = getenv(EnvSampleLog)
	return f, nil
}

// dumpHook writes the summed gradient and the global loss at the listed
// steps (EnvDumpGrads).
func (f faults) dumpHook() func(step int64, rank int, loss float64, g []float32) error {
	if f.dumpDir == "" {
		return nil
	}
	return func(step int64, rank int, loss float64, g []float32) error {
		if !f.dumpSteps[step] {
			return nil
		}
		name := filepath.Join(f.dumpDir, fmt.Sprintf("grad-step%d-rank%d", step, rank))
		b := make([]byte, 4*len(g))
		for i, x := range g {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		if err := os.WriteFile(name+".f32", b, 0o644); err != nil {
			return fmt.Errorf("%s: %w", EnvDumpGrads, err)
		}
		if err := os.WriteFile(name+".loss", []byte(strconv.FormatFloat(loss, 'g', -1, 64)), 0o644); err != nil {
			return fmt.Errorf("%s: %w", EnvDumpGrads, err)
		}
		return nil
	}
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
	*allreduce.Ring
	step    *int64 // the step being run, set by the training loop
	atSteps map[int64]bool
	delay   time.Duration
}

// arm schedules the kill when buf is a gradient (not the loss pair) of one
// of the steps.
func (c killComm) arm(buf []float32) {
	if c.atSteps[*c.step] && len(buf) > 2 {
		go func() {
			time.Sleep(c.delay)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}()
	}
}

func (c killComm) AllReduce(ctx context.Context, buf []float32) error {
	c.arm(buf)
	return c.Ring.AllReduce(ctx, buf)
}

// Start is the ring's, armed alike: the step's gradient buckets go through
// it when the reduction overlaps the backward pass.
func (c killComm) Start(ctx context.Context, buf []float32) *allreduce.Pending {
	c.arm(buf)
	return c.Ring.Start(ctx, buf)
}

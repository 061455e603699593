package scaling

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// Job is one training run of the benchmark.
type Job struct {
	Workers   int
	Threads   int // GOMAXPROCS of each worker; 0: the launcher's default
	Steps     int64
	Out       string // the run directory: summary.json, metrics.jsonl, checkpoints/
	TrainArgs []string
}

// Usage is what a launched job cost.
type Usage struct {
	WallSeconds float64 // from start to the exit of the last process
	CPUSeconds  float64 // user + system time of every process of the job
}

// ExecLauncher runs a job on loopback by re-executing the infonce binary:
// 'infonce train --workers N --steps S --no-eval --out DIR'. With one
// worker the job trains in the binary's own process, so the thread limit
// is set through the GOMAXPROCS environment variable.
type ExecLauncher struct {
	Binary         string
	Stdout, Stderr io.Writer // the jobs' output; nil discards it
	Nice           int       // run the job under 'nice -n Nice' when not 0
}

// niced returns the command line name args under 'nice -n n' when n is
// not 0; the processes the command starts inherit the niceness.
func niced(n int, name string, args ...string) (string, []string) {
	if n == 0 {
		return name, args
	}
	return "nice", append([]string{"-n", strconv.Itoa(n), name}, args...)
}

// newSession starts cmd in a session of its own when nice is not 0, so
// that setAutogroupNice can weigh it: with the kernel's scheduler
// autogroups, a process's niceness only counts against the processes of
// its own session, and a session's weight against other sessions is the
// niceness of its autogroup.
func newSession(cmd *exec.Cmd, nice int) {
	if nice != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
}

// setAutogroupNice sets the niceness of the autogroup of the session pid
// leads (see newSession). Kernels without autogroups have no
// /proc/PID/autogroup; the process's own niceness is then all there is.
func setAutogroupNice(pid, nice int) error {
	if nice == 0 {
		return nil
	}
	err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/autogroup", []byte(strconv.Itoa(nice)), 0)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("set the niceness of the job's autogroup: %w", err)
	}
	return nil
}

// Args is the command line of j.
func (l ExecLauncher) Args(j Job) []string {
	args := []string{"train", "--workers", strconv.Itoa(j.Workers), "--steps", strconv.FormatInt(j.Steps, 10), "--no-eval", "--out", j.Out}
	if j.Threads > 0 && j.Workers > 1 {
		args = append(args, "--threads-per-worker", strconv.Itoa(j.Threads))
	}
	return append(args, j.TrainArgs...)
}

// Launch runs j to completion.
func (l ExecLauncher) Launch(ctx context.Context, j Job) (Usage, error) {
	name, args := niced(l.Nice, l.Binary, l.Args(j)...)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = orDiscard(l.Stdout), orDiscard(l.Stderr)
	cmd.Env = os.Environ()
	if j.Threads > 0 && j.Workers == 1 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(j.Threads))
	}
	// SIGTERM lets the job stop its workers; a job that ignores it is
	// killed after the grace period.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	newSession(cmd, l.Nice)
	start := time.Now()
	err := cmd.Start()
	if err == nil {
		if err = setAutogroupNice(cmd.Process.Pid, l.Nice); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return Usage{}, err
		}
		err = cmd.Wait()
	}
	u := Usage{WallSeconds: time.Since(start).Seconds(), CPUSeconds: cpuSeconds(cmd.ProcessState)}
	if err != nil {
		return u, fmt.Errorf("%v: %w", cmd.Args, err)
	}
	return u, nil
}

// cpuSeconds is the user and system time of a finished process and of the
// descendants it waited for (Linux reports both in wait4's rusage).
func cpuSeconds(ps *os.ProcessState) float64 {
	if ps == nil {
		return 0
	}
	return (ps.UserTime() + ps.SystemTime()).Seconds()
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

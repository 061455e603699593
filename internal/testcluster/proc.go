package testcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infonce/infonce/internal/affinity"
)

// ProcOptions describe one process of the binary.
type ProcOptions struct {
	Binary string   // "" : Binary()
	Dir    string   // its log is Dir/Name.log
	Name   string   // names the process in logs and errors
	Args   []string // the command line after the binary
	Env    []string // added to the test's environment (later entries win)
	UID    uint32   // run as this user and group (0: as the test)
	CPUs   []int    // pin to these cores (nil: any)
}

// Proc is a running (or finished) process of the binary. It runs in a
// process group of its own, killed with the process when the test ends.
type Proc struct {
	Name    string
	LogPath string // its stdout and stderr
	Cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

// Start runs a process of the binary; it fails t when the process cannot
// start.
func Start(t testing.TB, o ProcOptions) *Proc {
	t.Helper()
	p, err := StartProc(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.killGroup() })
	return p
}

// StartProc is Start without a test: the caller must kill the process.
func StartProc(o ProcOptions) (*Proc, error) {
	bin := o.Binary
	if bin == "" {
		var err error
		if bin, err = Binary(context.Background()); err != nil {
			return nil, err
		}
	}
	logPath := filepath.Join(o.Dir, o.Name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testcluster: %s: %w", o.Name, err)
	}
	cmd := exec.Command(bin, o.Args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), o.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if o.UID != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: o.UID, Gid: o.UID}
	}
	if err := affinity.Start(cmd, o.CPUs); err != nil {
		f.Close()
		return nil, fmt.Errorf("testcluster: start %s: %w", o.Name, err)
	}
	p := &Proc{Name: o.Name, Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// killGroup kills the process's group, if the process still runs, and
// waits for the process.
func (p *Proc) killGroup() {
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Pid is the process's id (and its process group's).
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Done is closed once the process exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit (nil for status 0); only valid once Done is
// closed.
func (p *Proc) Err() error { return p.err }

// Alive reports whether the process still runs.
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }

// Kill sends SIGKILL to the process and waits for it to be gone.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// KillGroup sends SIGKILL to the process's whole group (it and the
// processes it started).
func (p *Proc) KillGroup() error { return syscall.Kill(-p.Pid(), syscall.SIGKILL) }

// WaitContext waits for the process to exit and returns its exit, or
// ctx's error.
func (p *Proc) WaitContext(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("testcluster: %s still running: %w", p.Name, ctx.Err())
	}
}

// Wait waits up to d for the process to exit and returns its exit; it
// fails t, with the tail of the process's log, when the process is still
// running then.
func (p *Proc) Wait(t testing.TB, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("%s did not exit within %v; its log:\n%s", p.Name, d, Tail(p.Output(), 40))
		return nil
	}
}

// Output is everything the process wrote so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// KilledByTest reports whether the process ended by SIGKILL.
func (p *Proc) KilledByTest() bool {
	ee, ok := p.err.(*exec.ExitError)
	return ok && ee.ProcessState.String() == "signal: killed"
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

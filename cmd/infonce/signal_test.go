package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSecondSignalExitsAtOnce: the first SIGINT asks the run to stop after
// its current step; a second one, sent while that step still runs, ends
// the process at once with status 130.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("trains in a child process; skipped with -short")
	}
	// Large steps, so that the first stop takes a while.
	p := startBinary(t, "train", "--no-eval", "--steps", "1000", "--batch", "8192", "--out", t.TempDir())
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.Output(), "msg=training") {
		if time.Now().After(deadline) || !p.Alive() {
			t.Fatalf("the run did not start training:\n%s", p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	// The second signal goes once the first was taken: two sent before the
	// process ran would reach it as one.
	for !strings.Contains(p.Output(), "again exits at once") {
		if time.Now().After(deadline) || !p.Alive() {
			t.Fatalf("the first SIGINT was not acknowledged:\n%s", p.Output())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := p.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10s after the second SIGINT:\n%s", p.Output())
	}
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) || ee.ExitCode() != exitSignal {
		t.Fatalf("exit %v, want status %d:\n%s", p.Err(), exitSignal, p.Output())
	}
	if !strings.Contains(p.Output(), "exiting at once") {
		t.Errorf("no word of the immediate exit in:\n%s", p.Output())
	}
}

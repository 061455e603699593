package checkpoint

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crashChildEnv, when set to a root directory, turns the test binary into a
// child that saves checkpoints in a loop until it is killed.
const crashChildEnv = "INFONCE_CHECKPOINT_CRASH_CHILD"

// crashBlobLen is the number of float32 values per blob in the crash test:
// large enough that a save takes a few milliseconds, so kills land inside it.
const crashBlobLen = 64 << 10

func TestMain(m *testing.M) {
	if root := os.Getenv(crashChildEnv); root != "" {
		os.Exit(crashChild(root))
	}
	os.Exit(m.Run())
}

// crashChild continues from the latest good checkpoint and saves one per
// step forever, printing "saved N" after each Save returns.
func crashChild(root string) int {
	s := &Store{Root: root, Keep: 3}
	ctx := context.Background()
	step := int64(0)
	c, err := s.LoadLatest(ctx)
	switch {
	case err == nil:
		step = c.Manifest.Step + 1
	case !errors.Is(err, ErrNoCheckpoint):
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	fmt.Println("ready")
	for ; ; step++ {
		if _, err := s.Save(ctx, testManifest(step), testBlobs(step, crashBlobLen)); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 1
		}
		fmt.Println("saved", step)
	}
}

// TestCrashSafety kills a saving child with SIGKILL at random (seeded)
// moments. After every kill the latest checkpoint must load, hold exactly what
// the child saved for its step, be at least as new as the last save the child
// reported, and every directory under a final name must verify.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary 20 times; skipped in -short mode")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skipf("cannot find the test binary to re-execute: %v", err)
	}
	const rounds = 20
	r := rand.New(rand.NewPCG(20261126, 1))
	root := filepath.Join(t.TempDir(), "ckpt")
	s := &Store{Root: root, Keep: 3}
	var (
		totalSaves, interrupted int
		lastReported            = int64(-1)
	)
	for round := range rounds {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+root)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		select {
		case l := <-lines:
			if l != "ready" {
				t.Fatalf("round %d: child said %q", round, l)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("round %d: child not ready", round)
		}
		delay := time.Duration(r.Int64N(int64(300 * time.Millisecond)))
		timer := time.After(delay)
	wait:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("round %d: child exited before the kill", round)
				}
				if n, ok := strings.CutPrefix(l, "saved "); ok {
					step, _ := strconv.ParseInt(n, 10, 64)
					lastReported = max(lastReported, step)
					totalSaves++
				}
			case <-timer:
				break wait
			}
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for l := range lines { // drain what was printed before the kill
			if n, ok := strings.CutPrefix(l, "saved "); ok {
				step, _ := strconv.ParseInt(n, 10, 64)
				lastReported = max(lastReported, step)
				totalSaves++
			}
		}
		io.Copy(io.Discard, out)
		if err := cmd.Wait(); err == nil {
			t.Fatalf("round %d: child exited cleanly", round)
		}

		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), tmpPrefix) {
				interrupted++
				break
			}
		}
		dirs, err := s.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dirs {
			if errs := Verify(d); errs != nil {
				t.Fatalf("round %d (kill after %v): a directory under a final name does not verify: %v", round, delay, errs)
			}
		}
		c, err := s.LoadLatest(context.Background())
		if lastReported < 0 {
			if err != nil && !errors.Is(err, ErrNoCheckpoint) {
				t.Fatalf("round %d: %v", round, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("round %d (kill after %v): LoadLatest after %d reported saves: %v", round, delay, totalSaves, err)
		}
		if c.Manifest.Step < lastReported {
			t.Fatalf("round %d: LoadLatest gave step %d, but step %d was reported saved", round, c.Manifest.Step, lastReported)
		}
		for _, want := range testBlobs(c.Manifest.Step, crashBlobLen) {
			got, err := c.Blob(want.Name)
			if err != nil || string(got) != string(want.Data) {
				t.Fatalf("round %d: blob %q of step %d differs from what was saved (%v)", round, want.Name, c.Manifest.Step, err)
			}
		}
	}
	if lastReported < 0 {
		t.Fatal("no child ever completed a save; the test proved nothing")
	}
	t.Logf("%d SIGKILLs, %d left an interrupted save or deletion behind (.tmp-*), %d saves completed, last step %d; every kill recovered",
		rounds, interrupted, totalSaves, lastReported)
}

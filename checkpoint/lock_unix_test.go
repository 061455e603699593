//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package checkpoint

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSaveLockHonoursContext(t *testing.T) {
	s, _ := newStore(t, 0)
	mustSave(t, s, 1)
	unlock, err := lockRoot(context.Background(), s.Root)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	other := &Store{Root: s.Root}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := other.Save(ctx, testManifest(2), testBlobs(2, 10)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Save while another writer holds the root: %v, want DeadlineExceeded", err)
	}
}

// TestSaveLockWaitIsBounded: a writer that holds the root's lock does not
// hold up another's save for ever: it fails with ErrLocked after LockWait,
// even under a context without a deadline.
func TestSaveLockWaitIsBounded(t *testing.T) {
	s, _ := newStore(t, 0)
	mustSave(t, s, 1)
	unlock, err := lockRoot(context.Background(), s.Root)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	other := &Store{Root: s.Root, LockWait: 100 * time.Millisecond}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := other.Save(context.Background(), testManifest(2), testBlobs(2, 10))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrLocked) {
			t.Errorf("Save while another writer holds the root: %v, want ErrLocked", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Save gave up after %v, want about 100ms", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Save still waits for the lock after 10s")
	}
}

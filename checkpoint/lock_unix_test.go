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

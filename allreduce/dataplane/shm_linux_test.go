package dataplane

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/shm"
)

// TestShmRingUsesSharedMemory: the links of a allreduce.TransportSHM ring on one
// host are shared-memory links, and no segment file is left behind.
func TestShmRingUsesSharedMemory(t *testing.T) {
	if _, err := os.Stat(shmDir); err != nil {
		t.Skipf("no %s: %v", shmDir, err)
	}
	before, _ := filepath.Glob(filepath.Join(shmDir, "infonce-ring-*"))
	for _, k := range []int{2, 3} {
		rings := makeRings(t, allreduce.TransportSHM, k, allreduce.Config{JobID: "shm"})
		for i, r := range rings {
			nt, ok := r.Transport().(*pair)
			if !ok {
				t.Fatalf("K=%d rank %d: transport %T", k, i, r.Transport())
			}
			if _, ok := nt.out.(*shm.Out); !ok {
				t.Errorf("K=%d rank %d: the link to the right is %T, want shared memory", k, i, nt.out)
			}
			if _, ok := nt.in.(*shm.In); !ok {
				t.Errorf("K=%d rank %d: the link from the left is %T, want shared memory", k, i, nt.in)
			}
		}
	}
	after, _ := filepath.Glob(filepath.Join(shmDir, "infonce-ring-*"))
	if len(after) > len(before) {
		t.Errorf("segment files left in %s: %v", shmDir, after)
	}
}

// TestShmMixedRing: in a ring where rank 1 uses plain TCP and the others
// shared memory, only the link between the two shared-memory ranks moves,
// and the collectives still sum right.
func TestShmMixedRing(t *testing.T) {
	if _, err := os.Stat(shmDir); err != nil {
		t.Skipf("no %s: %v", shmDir, err)
	}
	const k = 3
	rings := netRingsWith(t, k, allreduce.Config{JobID: "mixed", Transport: allreduce.TransportSHM}, func(rank int, c *allreduce.Config) {
		if rank == 1 {
			c.Transport = allreduce.TransportTCP
		}
	})
	ctx := context.Background()
	isShm := func(r *allreduce.Ring) (out, in bool) {
		nt := r.Transport().(*pair)
		_, out = nt.out.(*shm.Out)
		_, in = nt.in.(*shm.In)
		return out, in
	}
	for i, want := range [][2]bool{{false, true}, {false, false}, {true, false}} {
		if out, in := isShm(rings[i]); out != want[0] || in != want[1] {
			t.Errorf("rank %d: shared memory out %v in %v, want %v %v", i, out, in, want[0], want[1])
		}
	}
	bufs := make([][]float32, k)
	for i := range bufs {
		bufs[i] = make([]float32, 100_003)
		for j := range bufs[i] {
			bufs[i][j] = float32(i + j%7)
		}
	}
	mustAll(t, onAll(rings, func(r *allreduce.Ring) error { return r.AllReduce(ctx, bufs[r.Rank()]) }))
	for i := range bufs {
		for j, x := range bufs[i] {
			if want := float32(3 + 3*(j%7)); x != want {
				t.Fatalf("rank %d [%d] = %v, want %v", i, j, x, want)
			}
		}
	}
}

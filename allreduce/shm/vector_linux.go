package shm

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/internal/link"
)

// vecPrefix starts the file name of a published SharedVector in shmDir.
const vecPrefix = "infonce-vec-"

// vecBytes is the size of the mapping of a vector of n elements.
func vecBytes(n int) int {
	return vecHeader + (4*n+shmPage-1)/shmPage*shmPage
}

// NewSharedVector allocates a vector of n zero elements.
func NewSharedVector(n int) (*SharedVector, error) {
	if n <= 0 || n > 1<<40 {
		return nil, fmt.Errorf("allreduce: shared vector of %d elements", n)
	}
	size := vecBytes(n)
	p, err := unix.MmapPtr(-1, 0, nil, uintptr(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("allreduce: shared vector of %d elements: mmap: %w", n, err)
	}
	mem := unsafe.Slice((*byte)(p), size)
	return &SharedVector{n: n, mem: mem,
		floats: unsafe.Slice((*float32)(unsafe.Pointer(&mem[vecHeader])), n)}, nil
}

func (v *SharedVector) free() error {
	if err := unix.MunmapPtr(unsafe.Pointer(&v.mem[0]), uintptr(len(v.mem))); err != nil {
		return fmt.Errorf("allreduce: shared vector: munmap: %w", err)
	}
	return nil
}

// publish moves the vector's pages into a new file of shmDir, at the same
// address and with the same elements, and writes a fresh header (counters
// at zero, a new nonce). The caller holds the vector (acquire) and no
// collective runs on it.
func (v *SharedVector) publish() (name string, nonce [16]byte, err error) {
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", nonce, err
	}
	name = filepath.Join(shmDir, vecPrefix+hex.EncodeToString(nonce[:8]))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", nonce, err
	}
	defer f.Close()
	fail := func(err error) (string, [16]byte, error) {
		os.Remove(name)
		return "", nonce, fmt.Errorf("shared vector %s: %w", name, err)
	}
	if err := f.Truncate(int64(len(v.mem))); err != nil {
		return fail(err)
	}
	// Writing every page now allocates the whole file: a tmpfs that runs
	// full fails here, not later with a SIGBUS on a write to the mapping.
	if _, err := f.WriteAt(make([]byte, vecHeader), 0); err != nil {
		return fail(err)
	}
	if _, err := f.WriteAt(v.mem[vecHeader:], vecHeader); err != nil {
		return fail(err)
	}
	// MAP_FIXED replaces the old pages with the file's in one step: the
	// elements keep their address and, through the file, their values.
	if _, err := unix.MmapPtr(int(f.Fd()), 0, unsafe.Pointer(&v.mem[0]), uintptr(len(v.mem)),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED); err != nil {
		// A failed MAP_FIXED may have dropped the old pages: put private
		// memory back at the address, with the elements from the file.
		if _, err2 := unix.MmapPtr(-1, 0, unsafe.Pointer(&v.mem[0]), uintptr(len(v.mem)),
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED); err2 == nil {
			_, _ = f.ReadAt(v.mem[vecHeader:], vecHeader)
		}
		return fail(err)
	}
	copy(v.mem[vecOffNonce:], nonce[:])
	binary.LittleEndian.PutUint64(v.mem[vecOffLen:], uint64(v.n))
	v.view().magic().Store(vecMagic)
	v.name = name
	return name, nonce, nil
}

// unpublish removes the file (the mappings stay).
func (v *SharedVector) unpublish() {
	if v.name != "" {
		os.Remove(v.name)
		v.name = ""
	}
}

// view is this process's own view of the vector.
func (v *SharedVector) view() *vecView { return newVecView(v.mem, v.n, func() {}) }

// openVec maps, read-only, the vector a peer published and checks its
// header.
func openVec(name string, nonce [16]byte, n int) (*vecView, error) {
	if filepath.Dir(name) != shmDir || len(filepath.Base(name)) != len(vecPrefix)+16 || filepath.Base(name)[:len(vecPrefix)] != vecPrefix {
		return nil, fmt.Errorf("%w: shared vector name %q", link.ErrMalformed, name)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size := vecBytes(n)
	if st, err := f.Stat(); err != nil || st.Size() != int64(size) {
		return nil, fmt.Errorf("shared vector %s: not a vector of %d elements", name, n)
	}
	p, err := unix.MmapPtr(int(f.Fd()), 0, nil, uintptr(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("shared vector %s: mmap: %w", name, err)
	}
	mem := unsafe.Slice((*byte)(p), size)
	unmap := func() { _ = unix.MunmapPtr(p, uintptr(size)) }
	view := newVecView(mem, n, unmap)
	if view.magic().Load() != vecMagic || string(mem[vecOffNonce:vecOffNonce+16]) != string(nonce[:]) || binary.LittleEndian.Uint64(mem[vecOffLen:]) != uint64(n) {
		unmap()
		return nil, fmt.Errorf("shared vector %s: another vector than the peer's", name)
	}
	return view, nil
}

// linksShared reports whether both of this rank's links moved to shared
// memory, which makes both neighbours processes of this machine.
func linksShared(out *Out, in *In) bool { return out != nil && in != nil }

// linksAlive reports a neighbour whose process is gone, or a link closed
// here.
func linksAlive(out *Out, in *In) error {
	for _, s := range []*shmSeg{out.s, in.s} {
		if s.local.Load() {
			return errShmClosed
		}
		if s.gone.Load() {
			return fmt.Errorf("%w: the peer process closed the link", allreduce.ErrPeerLost)
		}
	}
	return nil
}

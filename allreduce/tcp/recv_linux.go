package tcp

import (
	"io"
	"syscall"
	"unsafe"
)

// On Linux the receiving side of a TCP link reads with blocking
// recvfrom(2) and MSG_WAITALL: one system call per frame part, the kernel
// copying segments out as they arrive until the part is complete, instead
// of a return to the network poller for every loopback segment. (No
// SO_RCVLOWAT here: the kernel would not wake a reader whose remaining
// bytes are fewer than the low-water mark.) The socket is switched to blocking mode when the link is
// handed to the ring; close shuts it down first, which wakes a blocked
// reader.

// makeBlocking switches the socket to blocking reads.
func (t *In) makeBlocking() {
	if t.raw == nil {
		return
	}
	t.raw.Control(func(fd uintptr) {
		if syscall.SetNonblock(int(fd), false) == nil {
			t.blocking = true
		}
	})
}

// readFull fills p from the socket (after whatever bufio had read ahead).
func (t *In) readFull(p []byte) error {
	if !t.blocking {
		_, err := io.ReadFull(t.br, p)
		return err
	}
	if t.lowat > 1 {
		// A ring whose other link moved to shared memory reads here,
		// where the event loop used to: a low-water mark it left would
		// keep this reader asleep when a frame is shorter.
		t.raw.Control(func(fd uintptr) {
			if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, 1) == nil {
				t.lowat = 1
			}
		})
	}
	if b := t.br.Buffered(); b > 0 {
		n, _ := t.br.Read(p[:min(b, len(p))])
		p = p[n:]
	}
	for len(p) > 0 {
		var n uintptr
		var errno syscall.Errno
		err := t.raw.Read(func(fd uintptr) bool {
			n, _, errno = syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
				syscall.MSG_WAITALL, 0, 0)
			return errno != syscall.EAGAIN
		})
		switch {
		case err != nil:
			return err
		case errno == syscall.EINTR:
			continue
		case errno != 0:
			return errno
		case n == 0:
			return io.EOF
		}
		p = p[n:]
	}
	return nil
}

// shutdown wakes a reader blocked in recvfrom before the socket closes.
func (t *In) shutdown() {
	if t.raw != nil {
		t.raw.Control(func(fd uintptr) { syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
	}
}

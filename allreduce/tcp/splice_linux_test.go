//go:build linux

package tcp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkLoopbackSend measures what one direction of a loopback TCP
// link costs in CPU per byte, both ends together, when the sender copies
// its buffer into the socket (write) and when it hands the buffer's pages
// over instead (vmsplice into a pipe, splice from the pipe into the
// socket). docs/SCALING.md has the figures: the second way is not
// cheaper over loopback, so the TCP data plane writes.
func BenchmarkLoopbackSend(b *testing.B) {
	const total = 64 << 20
	for _, mode := range []string{"write", "splice"} {
		for _, piece := range []int{256 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("%s/piece=%dKiB", mode, piece>>10), func(b *testing.B) {
				benchLoopbackSend(b, mode, piece, total)
			})
		}
	}
}

func benchLoopbackSend(b *testing.B, mode string, piece, total int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	out, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	in, ok := <-accepted
	if !ok {
		b.Fatal("accept failed")
	}
	defer in.Close()

	send := func(p []byte) error { _, err := out.Write(p); return err }
	if mode == "splice" {
		var pipe [2]int
		if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
			b.Fatal(err)
		}
		defer unix.Close(pipe[0])
		defer unix.Close(pipe[1])
		if _, err := unix.FcntlInt(uintptr(pipe[1]), unix.F_SETPIPE_SZ, piece); err != nil {
			b.Skipf("a pipe of %d bytes is not allowed here (/proc/sys/fs/pipe-max-size): %v", piece, err)
		}
		raw, err := out.(*net.TCPConn).SyscallConn()
		if err != nil {
			b.Fatal(err)
		}
		send = func(p []byte) error { return spliceSend(raw, pipe, p) }
	}

	src := make([]byte, total)
	for i := range src {
		src[i] = byte(i * 7)
	}
	received := make(chan error, 1)
	recvAll := func(n int) {
		buf := make([]byte, 1<<20)
		for n > 0 {
			k, err := in.Read(buf[:min(len(buf), n)])
			if err != nil {
				received <- err
				return
			}
			n -= k
		}
		received <- nil
	}

	b.SetBytes(int64(total))
	b.ResetTimer()
	cpu0 := processCPU()
	for range b.N {
		go recvAll(total)
		for off := 0; off < total; off += piece {
			if err := send(src[off:min(off+piece, total)]); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-received; err != nil {
			b.Fatal(err)
		}
	}
	cpu := processCPU() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(total), "cpu-ns/B")
}

// spliceSend moves p into the socket without copying it in user space:
// vmsplice(2) puts references to p's pages into the pipe, splice(2) moves
// them on into the socket. p must stay unchanged until the peer has read
// it, which the benchmark's fixed source buffer ensures.
func spliceSend(raw syscall.RawConn, pipe [2]int, p []byte) error {
	for len(p) > 0 {
		iov := []unix.Iovec{{Base: &p[0]}}
		iov[0].SetLen(len(p))
		n, err := unix.Vmsplice(pipe[1], iov, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("vmsplice: %w", err)
		}
		p = p[n:]
		for left := n; left > 0; {
			var serr error
			werr := raw.Write(func(fd uintptr) bool {
				m, err := unix.Splice(pipe[0], nil, int(fd), nil, left, unix.SPLICE_F_MOVE|unix.SPLICE_F_MORE)
				switch {
				case errors.Is(err, unix.EAGAIN):
					return false // wait until the socket takes more
				case errors.Is(err, unix.EINTR):
					return true
				case err != nil:
					serr = err
					return true
				case m == 0:
					serr = io.ErrUnexpectedEOF
					return true
				}
				left -= int(m)
				return true
			})
			if werr != nil {
				return werr
			}
			if serr != nil {
				return fmt.Errorf("splice: %w", serr)
			}
		}
	}
	return nil
}

// processCPU is the user and system CPU time of this process so far.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

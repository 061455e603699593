package allreduce

import "syscall"

// setRcvLowat sets SO_RCVLOWAT: the socket is readable (and its reader
// woken) only once v bytes are queued.
func setRcvLowat(fd uintptr, v int) {
	syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, v)
}

//go:build !linux

package shm

import (
	"context"
	"errors"
	"net"
)

// Shared-memory links are built on Linux only; elsewhere every link of a
// TransportSHM ring stays on TCP.

type shmSeg struct{}

var errShmUnsupported = errors.New("shared-memory links are only supported on Linux")

const shmDir = ""

func createShm(string) (*shmSeg, string, [16]byte, error) {
	return nil, "", [16]byte{}, errShmUnsupported
}

func openShm(string, [16]byte) (*shmSeg, error) { return nil, errShmUnsupported }

func (*shmSeg) unlink() {}
func (*shmSeg) unmap()  {}

// Out and In are the halves of a shared-memory link, which Upgrade never
// builds here.
type Out struct{}
type In struct{}

func (*Out) Send(uint64, []byte) error { return errShmUnsupported }
func (*Out) Close(bool)                {}
func (*In) Recv(context.Context, []byte) (uint64, int, error) {
	return 0, 0, errShmUnsupported
}
func (*In) Close() {}

func shmOutLink(*shmSeg, net.Conn, bool, func() bool) *Out { return nil }
func shmInLink(*shmSeg, net.Conn, bool, func() bool) *In   { return nil }

func machineCores() int { return 0 }

// The polls of shared-memory waits (none elsewhere than on Linux).
const shmSpinShared, shmSpinOwnCore = 0, 0

//go:build !linux

package allreduce

import (
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

func shmOutLink(*shmSeg, net.Conn, bool, func() bool) outLink { panic("unreachable: no segment") }
func shmInLink(*shmSeg, net.Conn, bool, func() bool) inLink   { panic("unreachable: no segment") }

func machineCores() int { return 0 }

// The polls of shared-memory waits (none elsewhere than on Linux).
const shmSpinShared, shmSpinOwnCore = 0, 0

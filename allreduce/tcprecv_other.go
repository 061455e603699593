//go:build !linux

package allreduce

import "io"

func (t *tcpIn) makeBlocking() {}

func (t *tcpIn) readFull(p []byte) error {
	_, err := io.ReadFull(t.br, p)
	return err
}

func (t *tcpIn) shutdown() {}

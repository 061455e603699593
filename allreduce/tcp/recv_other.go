//go:build !linux

package tcp

import "io"

func (t *In) makeBlocking() {}

func (t *In) readFull(p []byte) error {
	_, err := io.ReadFull(t.br, p)
	return err
}

func (t *In) shutdown() {}

//go:build !linux

package tcp

import (
	"context"
	"sync/atomic"

	"github.com/infonce/infonce/allreduce"
)

// loopState is the state of the Linux event loop (none here).
type loopState struct{}

// RunPass is the Linux event loop; elsewhere it never runs (Runs is
// false) and the ring's goroutine pass moves the messages.
func RunPass(context.Context, *Out, *In, *atomic.Bool, *allreduce.Pass) (int, error) {
	return 0, nil
}

// Runs reports whether RunPass can drive these links: never here.
func Runs(*Out, *In) bool { return false }

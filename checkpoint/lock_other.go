//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package checkpoint

import "context"

// lockRoot is a no-op on systems without flock: one writer per root is then
// the caller's responsibility.
func lockRoot(ctx context.Context, root string) (unlock func(), err error) {
	return func() {}, ctx.Err()
}

//go:build purego || !amd64

package vec

// accelerated returns nil: this build has only the portable kernels.
func accelerated() *kernels { return nil }

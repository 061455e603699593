//go:build !linux

package affinity

import "os/exec"

func start(*exec.Cmd, []int) error { return ErrUnsupported }

func pinSelf([]int) error { return ErrUnsupported }

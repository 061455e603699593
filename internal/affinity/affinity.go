package affinity

import (
	"errors"
	"fmt"
	"os/exec"
)

// ErrUnsupported is returned where the system cannot pin processes.
var ErrUnsupported = errors.New("affinity: pinning to cores is only supported on Linux")

// Spread returns the c cores of worker i on a machine of ncpu cores:
// [i·c, (i+1)·c), wrapping around when the workers outnumber the cores.
func Spread(i, c, ncpu int) []int {
	c = min(max(1, c), ncpu)
	cpus := make([]int, c)
	for j := range cpus {
		cpus[j] = (i*c + j) % ncpu
	}
	return cpus
}

// Start starts cmd on the cores cpus (all cores when cpus is empty). The
// child's threads all inherit the set.
func Start(cmd *exec.Cmd, cpus []int) error {
	if len(cpus) == 0 {
		return cmd.Start()
	}
	if err := start(cmd, cpus); err != nil {
		return fmt.Errorf("affinity: start %s on cores %v: %w", cmd.Path, cpus, err)
	}
	return nil
}

// PinSelf moves every thread of this process onto the cores cpus; threads
// started later inherit the set.
func PinSelf(cpus []int) error {
	if err := pinSelf(cpus); err != nil {
		return fmt.Errorf("affinity: pin this process to cores %v: %w", cpus, err)
	}
	return nil
}

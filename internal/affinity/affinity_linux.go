package affinity

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

func cpuSet(cpus []int) *unix.CPUSet {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	return &set
}

// start forks cmd from a thread whose mask is cpus: a forked child
// inherits the mask of the thread that forked it. The thread gets its mask
// back and never returns to the scheduler's pool (the goroutine exits
// locked to it, which ends the thread), so no goroutine ever runs with the
// narrowed mask.
func start(cmd *exec.Cmd, cpus []int) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		var old unix.CPUSet
		if err := unix.SchedGetaffinity(0, &old); err != nil {
			done <- err
			return
		}
		if err := unix.SchedSetaffinity(0, cpuSet(cpus)); err != nil {
			done <- err
			return
		}
		err := cmd.Start()
		_ = unix.SchedSetaffinity(0, &old)
		done <- err
	}()
	return <-done
}

func pinSelf(cpus []int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	set := cpuSet(cpus)
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
			return err
		}
	}
	return nil
}

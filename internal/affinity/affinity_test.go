package affinity

import (
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestSpread(t *testing.T) {
	for _, c := range []struct {
		i, c, ncpu int
		want       []int
	}{
		{0, 1, 1, []int{0}},
		{0, 2, 2, []int{0, 1}},
		{0, 1, 2, []int{0}},
		{1, 1, 2, []int{1}},
		{2, 1, 2, []int{0}},
		{3, 1, 2, []int{1}},
		{1, 4, 8, []int{4, 5, 6, 7}},
		{0, 3, 2, []int{0, 1}},
	} {
		if got := Spread(c.i, c.c, c.ncpu); !slices.Equal(got, c.want) {
			t.Errorf("Spread(%d, %d, %d) = %v, want %v", c.i, c.c, c.ncpu, got, c.want)
		}
	}
}

// allowed returns the Cpus_allowed_list line of a status file.
func allowed(status string) string {
	for line := range strings.Lines(status) {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestStart starts a shell on the last core and reads its mask back; this
// process's own threads keep theirs.
func TestStart(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("pinning is Linux-only")
	}
	last := runtime.NumCPU() - 1
	before, err := exec.Command("sh", "-c", "cat /proc/$PPID/status").Output()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd := exec.Command("sh", "-c", "cat /proc/self/status")
	cmd.Stdout = &out
	if err := Start(cmd, []int{last}); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if got, want := allowed(out.String()), strconv.Itoa(last); got != want {
		t.Errorf("the child runs on cores %q, want %q", got, want)
	}
	// A child started without cores has the parent's mask: nothing of the
	// narrowed mask leaked into this process's threads.
	for range 20 {
		after, err := exec.Command("sh", "-c", "cat /proc/$PPID/status").Output()
		if err != nil {
			t.Fatal(err)
		}
		if allowed(string(after)) != allowed(string(before)) {
			t.Fatalf("this process's mask changed from %q to %q", allowed(string(before)), allowed(string(after)))
		}
	}
}

// TestPinSelf pins a child test process (this test binary, re-run) to one
// core and checks every one of its threads.
func TestPinSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("pinning is Linux-only")
	}
	if os.Getenv("AFFINITY_PIN_CHILD") == "1" {
		if err := PinSelf([]int{0}); err != nil {
			t.Fatal(err)
		}
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/status")
			if err != nil {
				continue // the thread ended
			}
			if got := allowed(string(b)); got != "0" {
				t.Errorf("thread %s runs on cores %q, want 0", task.Name(), got)
			}
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestPinSelf$", "-test.count=1")
	cmd.Env = append(os.Environ(), "AFFINITY_PIN_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

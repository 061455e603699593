package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infonce/infonce/rundir"
)

// localSSH stands in for ssh: `localssh HOST COMMAND...` runs COMMAND with
// this machine's shell, as sshd would run it on HOST (the words joined by
// spaces, the session's input passed through).
const localSSH = `#!/bin/sh
host=$1
shift
echo "$host" >> "$(dirname "$0")/hosts.called"
exec sh -c "$*"
`

// sshLauncher prepares launch.sh against "hosts" that are all this
// machine.
func sshLauncher(t *testing.T, hosts int) (cmd *exec.Cmd, out, logs, dir string) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a distributed job; skipped with -short")
	}
	for _, tool := range []string{"bash", "ip", "getent", "mkfifo"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("launch.sh needs %s, which is not installed", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	bin := buildBinary(t, ctx)
	dir = t.TempDir()
	runner := filepath.Join(dir, "localssh")
	if err := os.WriteFile(runner, []byte(localSSH), 0o755); err != nil {
		t.Fatal(err)
	}
	hostfile := filepath.Join(dir, "hosts")
	lines := "# two workers on this machine\n\n"
	for i := 0; i < hosts; i++ {
		lines += "127.0.0.1\n"
	}
	if err := os.WriteFile(hostfile, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	out, logs = filepath.Join(dir, "run"), filepath.Join(dir, "logs")
	cmd = exec.CommandContext(ctx, "bash", filepath.Join(repoRoot(t), "deploy", "ssh", "launch.sh"), hostfile)
	cmd.Env = withEnv(map[string]string{
		"INFONCE_BIN":         bin,
		"INFONCE_SSH":         runner,
		"INFONCE_OUT":         out,
		"INFONCE_LOG_DIR":     logs,
		"INFONCE_PORT":        strconv.Itoa(freePort(t)),
		"INFONCE_GOSSIP_PORT": strconv.Itoa(freePort(t)),
		"INFONCE_BATCH":       "256",
		"INFONCE_HIDDEN":      "64",
	})
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 10 * time.Second
	return cmd, out, logs, dir
}

// TestSSHLaunch runs deploy/ssh/launch.sh with a hostfile of two
// loopback hosts and ssh replaced by a local runner: the run finishes, and
// every process has its log.
func TestSSHLaunch(t *testing.T) {
	cmd, out, logs, dir := sshLauncher(t, 2)
	cmd.Args = append(cmd.Args, "--steps", "30", "--log-every", "1")
	cmd.Env = append(cmd.Env, "INFONCE_NO_EVAL=true")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("launch.sh: %v\n%s\n%s", err, b, dumpLogs(logs))
	}
	sum, err := os.ReadFile(rundir.SummaryPath(out))
	if err != nil {
		t.Fatalf("no summary.json: %v\n%s\n%s", err, b, dumpLogs(logs))
	}
	checkSummary(t, sum, 30, 2)
	if l := readLossesFile(t, rundir.MetricsPath(out)); len(l) != 30 {
		t.Errorf("metrics.jsonl has %d steps, want 30", len(l))
	}
	for _, pat := range []string{"coordinator.log", "worker-0-127.0.0.1.log", "worker-1-127.0.0.1.log"} {
		if m, _ := filepath.Glob(filepath.Join(logs, pat)); len(m) != 1 {
			t.Errorf("no log %s in %s", pat, logs)
		}
	}
	called, _ := os.ReadFile(filepath.Join(dir, "hosts.called"))
	if got := strings.Fields(string(called)); len(got) != 2 {
		t.Errorf("the ssh command was called for %v, want the two hosts", got)
	}
	if _, err := os.Stat(filepath.Join(logs, ".lifeline")); !os.IsNotExist(err) {
		t.Errorf("the lifeline FIFO was left behind: %v", err)
	}
}

// TestSSHLaunchInterrupt stops launch.sh in the middle of a run: the
// remote workers are told to stop through their session's input, rank 0
// saves a checkpoint, and no worker is left running.
func TestSSHLaunchInterrupt(t *testing.T) {
	cmd, out, logs, _ := sshLauncher(t, 2)
	cmd.Args = append(cmd.Args, "--steps", "100000")
	cmd.Env = append(cmd.Env, "INFONCE_NO_EVAL=true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		if b, err := os.ReadFile(rundir.MetricsPath(out)); err == nil && strings.Count(string(b), "\n") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
			t.Fatalf("the run did not start\n%s", dumpLogs(logs))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Ctrl-C of a terminal: SIGINT to launch.sh alone (its children do
	// not get it: the stop must travel through the lifeline).
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatalf("launch.sh did not stop within 60s of SIGINT\n%s", dumpLogs(logs))
	}
	// Every process of the launch is gone: nothing is left in its group.
	if err := syscall.Kill(-cmd.Process.Pid, 0); err == nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Errorf("processes of launch.sh were still running after it ended\n%s", dumpLogs(logs))
	}
	if m, _ := filepath.Glob(filepath.Join(rundir.CheckpointDir(out), "step-*", "manifest.json")); len(m) == 0 {
		t.Errorf("no checkpoint was saved on the stop\n%s", dumpLogs(logs))
	}
}

func dumpLogs(dir string) string {
	var b strings.Builder
	m, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range m {
		b.WriteString("== " + filepath.Base(f) + "\n" + tailFile(f) + "\n")
	}
	return b.String()
}

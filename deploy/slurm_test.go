package deploy

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infonce/infonce/rundir"
)

// slurmConf is a one-node cluster on this machine: slurmctld and slurmd
// talk over loopback, authenticated by a munged of the test's own.
const slurmConf = `ClusterName=infoncetest
SlurmctldHost={{host}}(127.0.0.1)
SlurmctldPort={{ctldport}}
SlurmdPort={{slurmdport}}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={{dir}}/munge.sock
StateSaveLocation={{dir}}/state
SlurmdSpoolDir={{dir}}/spool
SlurmctldPidFile={{dir}}/slurmctld.pid
SlurmdPidFile={{dir}}/slurmd.pid
SlurmctldLogFile={{dir}}/slurmctld.log
SlurmdLogFile={{dir}}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName={{host}} NodeAddr=127.0.0.1 CPUs={{cpus}} State=UNKNOWN
PartitionName=debug Nodes={{host}} Default=YES MaxTime=INFINITE State=UP
`

// TestSlurmBatch submits deploy/slurm/infonce.sbatch to a real Slurm
// (Debian's slurm-wlm) started for the test on this machine with one
// node, and checks that the run finishes with a summary.
func TestSlurmBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts munged, slurmctld and slurmd; skipped with -short")
	}
	for _, tool := range []string{"munged", "slurmctld", "slurmd", "sbatch", "sinfo", "scontrol"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: Slurm is not installed (apt-get install slurm-wlm)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("slurmd must run as root to start job steps; the test is not root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// munged checks that every directory above its socket is searchable
	// by all, which t.TempDir's are not.
	dir, err := os.MkdirTemp("", "infonce-slurm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{dir, filepath.Join(dir, "state"), filepath.Join(dir, "spool"), filepath.Join(dir, "job")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	key := make([]byte, 1024)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "munge.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	host, err := exec.CommandContext(ctx, "hostname", "-s").Output()
	if err != nil {
		t.Skipf("hostname -s: %v", err)
	}
	conf := strings.NewReplacer(
		"{{host}}", strings.TrimSpace(string(host)),
		"{{dir}}", dir,
		"{{ctldport}}", strconv.Itoa(freePort(t)),
		"{{slurmdport}}", strconv.Itoa(freePort(t)),
		"{{cpus}}", strconv.Itoa(runtime.NumCPU()),
	).Replace(slurmConf)
	confPath := filepath.Join(dir, "slurm.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	env := withEnv(nil, "SLURM_CONF="+confPath)

	daemon(t, dir, env, "munged", "munged", "-F", "--force",
		"--socket="+filepath.Join(dir, "munge.sock"), "--key-file="+filepath.Join(dir, "munge.key"),
		"--pid-file="+filepath.Join(dir, "munged.pid"), "--log-file="+filepath.Join(dir, "munged.log"),
		"--seed-file="+filepath.Join(dir, "munged.seed"))
	waitFile(t, filepath.Join(dir, "munge.sock"), 10*time.Second, dir)
	daemon(t, dir, env, "slurmctld", "slurmctld", "-D", "-i", "-f", confPath)
	daemon(t, dir, env, "slurmd", "slurmd", "-D", "-f", confPath)

	// Wait for the node to be idle.
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := tryRun(ctx, env, dir, "sinfo", "-h", "-o", "%T")
		if err == nil && strings.TrimSpace(out) == "idle" {
			break
		}
		if time.Now().After(deadline) {
			t.Skipf("Slurm did not start on this machine (sinfo: %v %q); slurmctld.log:\n%s\nslurmd.log:\n%s",
				err, strings.TrimSpace(out), tailFile(filepath.Join(dir, "slurmctld.log")), tailFile(filepath.Join(dir, "slurmd.log")))
		}
		time.Sleep(500 * time.Millisecond)
	}

	bin := buildBinary(t, ctx)
	out := filepath.Join(dir, "job", "run")
	script := filepath.Join(repoRoot(t), "deploy", "slurm", "infonce.sbatch")
	jobEnv := withEnv(map[string]string{
		"INFONCE_BIN":     bin,
		"INFONCE_OUT":     out,
		"INFONCE_STEPS":   "30",
		"INFONCE_BATCH":   "256",
		"INFONCE_HIDDEN":  "64",
		"INFONCE_NO_EVAL": "true",
	}, "SLURM_CONF="+confPath)
	logPath := filepath.Join(dir, "job", "infonce-%j.out")
	res, err := tryRun(ctx, jobEnv, filepath.Join(dir, "job"), "sbatch", "--wait", "--nodes=1",
		"--output="+logPath, "--chdir="+filepath.Join(dir, "job"), script)
	jobLog := ""
	if m, _ := filepath.Glob(filepath.Join(dir, "job", "infonce-*.out")); len(m) == 1 {
		b, _ := os.ReadFile(m[0])
		jobLog = string(b)
	}
	if err != nil {
		t.Fatalf("sbatch --wait: %v\n%s\njob output:\n%s\nslurmd.log:\n%s", err, res, tail(jobLog, 6000), tailFile(filepath.Join(dir, "slurmd.log")))
	}
	sum, err := os.ReadFile(rundir.SummaryPath(out))
	if err != nil {
		t.Fatalf("no summary.json after the job: %v\njob output:\n%s", err, tail(jobLog, 6000))
	}
	checkSummary(t, sum, 30, 1)
	t.Logf("job output ends:\n%s", tail(jobLog, 1500))
	if l := readLossesFile(t, rundir.MetricsPath(out)); len(l) == 0 {
		t.Error("metrics.jsonl has no step")
	}
	if !strings.Contains(jobLog, "coordinator listening on") || !strings.Contains(jobLog, "workers exited 0, coordinator 0") {
		t.Errorf("job output lacks the coordinator's start or the final statuses:\n%s", tail(jobLog, 6000))
	}
}

// daemon starts a process of the test in the background; it is ended
// (SIGTERM, then SIGKILL) when the test ends.
func daemon(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, name+".out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, dir, logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Skipf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
}

func waitFile(t *testing.T, path string, limit time.Duration, dir string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Skipf("%s did not appear within %v; munged.out:\n%s", path, limit, tailFile(filepath.Join(dir, "munged.out")))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tailFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return tail(string(b), 3000)
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

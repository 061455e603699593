package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infonce/infonce/internal/testcluster"
	"github.com/infonce/infonce/rundir"
)

// smallMNIST writes a small idx MNIST (512 training, 128 test images), so
// that an evaluation takes a moment.
func smallMNIST(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnist")
	if err := testcluster.WriteMNIST(dir, 512, 128); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTrainWorkersEvalEvery: `train --workers 2 --eval-every 3` over 7
// steps has rank 0 write evaluations after steps 3 and 6 into
// metrics.jsonl, ends with the parameters of the same run without
// --eval-every, and `infonce report` plots the evaluations against the
// step.
func TestTrainWorkersEvalEvery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes twice; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	data := "idx:" + smallMNIST(t)
	plain, evald := t.TempDir(), t.TempDir()
	if out, err := binary(t, ctx, tiny(plain, 7, "--data", data, "--workers", "2")...); err != nil {
		t.Fatalf("--workers 2: %v\n%s", err, out)
	}
	if out, err := binary(t, ctx, tiny(evald, 7, "--data", data, "--workers", "2", "--eval-every", "3")...); err != nil {
		t.Fatalf("--workers 2 --eval-every 3: %v\n%s", err, out)
	}
	if a, b := summarySHA(t, plain), summarySHA(t, evald); a != b {
		t.Errorf("param_sha256 %s with --eval-every, %s without: the evaluation changed the training", b, a)
	}
	ms, _, err := rundir.ReadMetrics(evald)
	if err != nil {
		t.Fatal(err)
	}
	var steps []int64
	for _, m := range rundir.Evaluations(ms) {
		steps = append(steps, m.Step)
		if m.Workers != 2 || m.Eval.ZeroShotTop1 == nil || m.Eval.RecallI2TAt1 == nil || m.Eval.LinearProbeAccuracy <= 0 {
			t.Errorf("step %d: evaluation line %+v: want 2 workers, zero-shot, retrieval and the probe", m.Step, *m.Eval)
		}
	}
	if fmt.Sprint(steps) != "[2 5]" {
		t.Errorf("evaluation lines after steps %v (0-based), want [2 5]", steps)
	}
	if n := len(rundir.History(ms)); n != 7 {
		t.Errorf("%d step lines, want 7", n)
	}

	var stdout, stderr bytes.Buffer
	rep := filepath.Join(t.TempDir(), "report")
	if code := run(ctx, []string{"report", "--out", rep, evald}, &stdout, &stderr); code != 0 {
		t.Fatalf("report exited %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "2 evaluations plotted against the step in eval.png") {
		t.Errorf("report printed %q", stdout.String())
	}
	if fi, err := os.Stat(filepath.Join(rep, "eval.png")); err != nil || fi.Size() == 0 {
		t.Errorf("eval.png: %v", err)
	}
}

// TestWorkerServesEvalGauges: in a run of a coordinator and two `infonce
// worker --http` processes with --eval-every 2, the /metrics of the worker
// that holds rank 0 shows the latest evaluation's scores and step while the
// run trains.
func TestWorkerServesEvalGauges(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a coordinator and two worker processes; skipped with -short")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data := smallMNIST(t)
	c := testcluster.New(t, testcluster.Options{Workers: 2, Steps: 100000, Binary: exe,
		TrainArgs: func(out string, steps int) []string {
			return []string{"--data", "idx:" + data, "--batch", "32", "--hidden", "16", "--text-hidden", "8", "--dim", "8",
				"--steps", strconv.Itoa(steps), "--log-every", "1", "--eval-every", "2", "--out", out}
		}})
	var addrs []string
	for range 2 {
		port, err := testcluster.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		addrs = append(addrs, addr)
		c.AddWorker(nil, "--http", addr)
	}
	deadline := time.Now().Add(2 * time.Minute)
	var body string
	for found := false; !found; {
		if time.Now().After(deadline) {
			c.Dump()
			t.Fatalf("no worker showed infonce_eval_step within 2 minutes")
		}
		time.Sleep(50 * time.Millisecond)
		for _, a := range addrs {
			if b := scrape(a); strings.Contains(b, "infonce_eval_step ") {
				body, found = b, true
			}
		}
	}
	c.StopGracefully(time.Minute)
	step, _ := gauge(body, "infonce_eval_step")
	if step < 2 || int64(step)%2 != 0 {
		t.Errorf("infonce_eval_step %g: want a multiple of --eval-every 2", step)
	}
	checkEvalGauges(t, body)
	if rank, _ := gauge(body, "infonce_rank"); rank != 0 {
		t.Errorf("the gauges come from rank %g, want rank 0", rank)
	}
}

// TestTrainWorkersServesEvalGauges: `train --workers 2 --http` serves the
// coordinator's /metrics, which shows the evaluations rank 0 writes into
// the run directory.
func TestTrainWorkersServesEvalGauges(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes; skipped with -short")
	}
	port, err := testcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p := startBinary(t, tiny(t.TempDir(), 100000, "--data", "idx:"+smallMNIST(t), "--workers", "2", "--eval-every", "2", "--http", addr)...)
	deadline := time.Now().Add(2 * time.Minute)
	var body string
	for !strings.Contains(body, "infonce_eval_step ") {
		if time.Now().After(deadline) || !p.Alive() {
			t.Fatalf("the coordinator's /metrics showed no infonce_eval_step:\n%s", testcluster.Tail(p.Output(), 30))
		}
		time.Sleep(50 * time.Millisecond)
		body = scrape(addr)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(t, time.Minute); err != nil {
		t.Errorf("train after SIGTERM: %v", err)
	}
	if step, _ := gauge(body, "infonce_eval_step"); step < 2 || int64(step)%2 != 0 {
		t.Errorf("infonce_eval_step %g: want a multiple of --eval-every 2", step)
	}
	checkEvalGauges(t, body)
}

// checkEvalGauges checks that a /metrics body shows the scores of an
// evaluation of MNIST: zero-shot, retrieval and the probe, as fractions.
func checkEvalGauges(t *testing.T, body string) {
	t.Helper()
	for _, name := range []string{"infonce_eval_zero_shot_top1", "infonce_eval_recall_i2t_at_1", "infonce_eval_linear_probe_accuracy"} {
		if v, ok := gauge(body, name); !ok || v < 0 || v > 1 {
			t.Errorf("%s = %g (present %v), want a fraction", name, v, ok)
		}
	}
}

// scrape returns the body of addr's /metrics ("" while it does not answer).
func scrape(addr string) string {
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// gauge is the value of the unlabelled metric name in a /metrics body.
func gauge(body, name string) (float64, bool) {
	for l := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

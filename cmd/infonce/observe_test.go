package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infonce/infonce/coordinator"
	"github.com/infonce/infonce/rundir"
	"github.com/infonce/infonce/worker"
)

func TestHealthCommand(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, `{"role":"worker","step":7}`)
	}))
	defer ok.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	refused := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}()
	okPort := ok.Listener.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		name   string
		args   []string
		env    string // INFONCE_HTTP
		code   int
		output string
	}{
		{"healthy", []string{"--url", ok.URL + "/healthz"}, "", 0, `"step":7`},
		{"quiet", []string{"--quiet", "--url", ok.URL + "/healthz"}, "", 0, ""},
		{"not found", []string{"--url", ok.URL + "/nothing"}, "", 1, "404"},
		{"refused", []string{"--url", "http://" + refused + "/healthz"}, "", 1, "unhealthy"},
		{"too slow", []string{"--timeout", "200ms", "--url", slow.URL + "/healthz"}, "", 1, "deadline"},
		{"from INFONCE_HTTP", nil, ":" + strconv.Itoa(okPort), 0, `"role":"worker"`},
		{"from INFONCE_HTTP on all interfaces", nil, "0.0.0.0:" + strconv.Itoa(okPort), 0, `"role":"worker"`},
		{"nothing to probe", nil, "", 2, "--url is required"},
		{"bad INFONCE_HTTP", nil, "nonsense", 2, "INFONCE_HTTP"},
		{"bad url", []string{"--url", "::"}, "", 2, "--url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("INFONCE_HTTP", tc.env)
			} else {
				os.Unsetenv("INFONCE_HTTP")
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"health"}, tc.args...), &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != tc.code || !strings.Contains(out, tc.output) {
				t.Errorf("exit %d (want %d), output %q (want %q)", code, tc.code, out, tc.output)
			}
			if tc.output == "" && out != "" {
				t.Errorf("--quiet printed %q", out)
			}
		})
	}
}

func TestReportCommand(t *testing.T) {
	run0 := t.TempDir()
	var lines []string
	for s := 0; s < 12; s++ {
		b, _ := json.Marshal(worker.Metric{Step: int64(s), Loss: 5 / float64(s+1), LogitScale: 14, LR: 1e-3, SamplesPerSecond: 900,
			StepTime: rundir.Breakdown{DataMS: 1, ForwardMS: 2, TotalMS: 3}})
		lines = append(lines, string(b))
	}
	if err := os.WriteFile(filepath.Join(run0, "metrics.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, _ := json.Marshal(worker.Summary{Objective: "clip", Data: "mnist", Steps: 12, FinalLoss: 5.0 / 12})
	if err := os.WriteFile(filepath.Join(run0, "summary.json"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "rep")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		output string
	}{
		{"report", []string{"--out", out, run0}, 0, "report of 12 metrics lines"},
		{"no run directory", nil, 2, "give one run directory"},
		{"two run directories", []string{run0, run0}, 2, "give one run directory"},
		{"not a run directory", []string{t.TempDir()}, 1, "metrics.jsonl"},
		{"bad flag", []string{"--frobnicate", run0}, 2, "frobnicate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"report"}, tc.args...), &stdout, &stderr)
			if o := stdout.String() + stderr.String(); code != tc.code || !strings.Contains(o, tc.output) {
				t.Errorf("exit %d (want %d), output %q (want %q)", code, tc.code, o, tc.output)
			}
		})
	}
	for _, f := range []string{"report.html", "loss.png", "step_time.png"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestServeHelpers(t *testing.T) {
	ctx := context.Background()
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	freeAddr := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}

	// Off: no observer, nothing served.
	var o worker.MemberOptions
	stop, err := serveWorker(ctx, "", &o, quietLogger())
	if err != nil || o.Observer != nil {
		t.Fatalf("--http off: observer %v, err %v", o.Observer, err)
	}
	stop()

	// A worker: its observer feeds /metrics.
	addr := freeAddr()
	stop, err = serveWorker(ctx, addr, &o, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	o.Observer.StepDone(worker.StepStats{Step: 9, Loss: 3}, 2, 0, 2)
	if code, body := get("http://" + addr + "/metrics"); code != 200 || !strings.Contains(body, "infonce_step 10") {
		t.Errorf("/metrics %d %.300s", code, body)
	}
	if code, body := get("http://" + addr + "/healthz"); code != 200 || !strings.Contains(body, `"role": "worker"`) {
		t.Errorf("/healthz %d %s", code, body)
	}
	if _, err := serveWorker(ctx, addr, &worker.MemberOptions{}, quietLogger()); err == nil || !strings.Contains(err.Error(), "--http "+addr) {
		t.Errorf("a second server on %s: %v", addr, err)
	}
	stop()
	stop() // idempotent

	// A coordinator: the status page.
	cc := coordinator.DefaultLocalConfig()
	cc.DisableGossip, cc.Logger = true, quietLogger()
	srv, err := coordinator.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cf := coordinatorFlags{http: freeAddr()}
	stop, err = cf.serveCoordinator(ctx, srv, worker.DefaultConfig(), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if code, body := get("http://" + cf.http + "/healthz"); code != 200 || !strings.Contains(body, `"role": "coordinator"`) || !strings.Contains(body, `"status": "waiting"`) {
		t.Errorf("/healthz %d %s", code, body)
	}
	if code, body := get("http://" + cf.http + "/"); code != 200 || !strings.Contains(body, `<table id="members">`) {
		t.Errorf("/ %d %.300s", code, body)
	}
}

func TestTrainServesHTTP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	out := t.TempDir()
	// A long run, stopped as soon as /healthz answered: the stop request
	// ends it at a step boundary with a checkpoint.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan int, 1)
	var stdout, stderr bytes.Buffer
	go func() {
		done <- run(ctx, append([]string{"train", "--no-eval", "--http", addr}, small(out, "--steps", "1000000")...), &stdout, &stderr)
	}()
	var health bytes.Buffer
	for {
		select {
		case code := <-done:
			t.Fatalf("train exited %d before /healthz answered: %s", code, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		health.Reset()
		var herr bytes.Buffer
		if run(context.Background(), []string{"health", "--timeout", "1s", "--url", "http://" + addr + "/healthz"}, &health, &herr) == 0 {
			break
		}
	}
	stop()
	if code := <-done; code != 0 {
		t.Fatalf("train exited %d: %s", code, stderr.String())
	}
	if !strings.Contains(health.String(), `"role": "train"`) {
		t.Errorf("/healthz answered %s", health.String())
	}
	if !strings.Contains(stderr.String(), "serving http") || !strings.Contains(stderr.String(), "--resume latest") {
		t.Errorf("no log line of the server, or no stop: %s", stderr.String())
	}
	// The server stops with the command.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("--http still answers after train returned")
	}
}

func TestHTTPFlagErrors(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"worker", "--coordinator", "127.0.0.1:1", "--http", "256.0.0.1:http"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "--http 256.0.0.1:http") {
		t.Errorf("exit %d: %s", code, stderr.String())
	}
}

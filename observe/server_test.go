package observe

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// get fetches url and returns the status, content type and body.
func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

func TestServeEndpoints(t *testing.T) {
	defer checkNoLeaks(t)()
	wreg := NewRegistry()
	w, err := NewWorker(wreg, WorkerOptions{Role: "worker", Batch: 32, GradientBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	w.GenerationStarted(2, 1, 2)
	w.StepDone(stats(41, 2.25, 4), 2, 1, 2)
	creg := NewRegistry()
	co, err := NewCoordinator(creg, &fakeStatus{st: runningStatus()}, CoordinatorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	servers := map[string]Endpoints{
		"worker":      {Gatherer: wreg, Health: w.Health, Logger: quiet()},
		"coordinator": {Gatherer: creg, Health: co.Health, Status: co, Logger: quiet()},
		"bare":        {Logger: quiet()},
	}
	for _, tc := range []struct {
		server, path string
		code         int
		ctype        string
		contains     []string
	}{
		{"worker", "/metrics", 200, "text/plain", []string{"infonce_steps_total 1", `infonce_step_phase_seconds_bucket{phase="reduce",le="0.005"} 1`, "infonce_allreduce_busbw_bytes_per_second", "go_goroutines", "process_cpu_seconds_total"}},
		{"worker", "/healthz", 200, "application/json", []string{`"role": "worker"`, `"generation": 2`, `"step": 42`, `"rank": 1`}},
		{"worker", "/", 404, "", nil},
		{"worker", "/status", 404, "", nil},
		{"coordinator", "/metrics", 200, "text/plain", []string{"infonce_generation 3", `infonce_members{state="active"} 2`}},
		{"coordinator", "/healthz", 200, "application/json", []string{`"role": "coordinator"`, `"status": "running"`, `"step": 120`}},
		{"coordinator", "/", 200, "text/html", []string{`<table id="members">`, `<svg class="chart"`}},
		{"coordinator", "/status", 200, "text/html", []string{`<table id="generations">`}},
		{"coordinator", "/status.json", 200, "application/json", []string{`"job_id": "test"`, `"phase": "running"`}},
		{"coordinator", "/nothing", 404, "", nil},
		{"bare", "/healthz", 200, "application/json", []string{`"role": "unknown"`}},
		{"bare", "/metrics", 404, "", nil},
	} {
		t.Run(tc.server+tc.path, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			srv, err := Listen("127.0.0.1:0", Handler(servers[tc.server]))
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx) }()
			code, ctype, body := get(t, "http://"+srv.Addr()+tc.path)
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if code != tc.code || !strings.HasPrefix(ctype, tc.ctype) {
				t.Fatalf("GET %s: %d %q, want %d %q\n%s", tc.path, code, ctype, tc.code, tc.ctype, body)
			}
			for _, c := range tc.contains {
				if !strings.Contains(body, c) {
					t.Errorf("GET %s lacks %q:\n%.2000s", tc.path, c, body)
				}
			}
		})
	}
}

func TestHealthzIsJSON(t *testing.T) {
	src := &fakeStatus{st: runningStatus()}
	co, err := NewCoordinator(NewRegistry(), src, CoordinatorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Listen("127.0.0.1:0", Handler(Endpoints{Health: co.Health}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	_, _, body := get(t, "http://"+srv.Addr()+"/healthz")
	var h Health
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("/healthz body %q: %v", body, err)
	}
	if h != (Health{Role: "coordinator", Status: "running", Generation: 3, Step: 120, World: 2, Loss: 2.6, Checkpoint: "/runs/x/checkpoints/step-100"}) {
		t.Errorf("health %+v", h)
	}
}

func TestServeShutsDownWithRequestsInFlight(t *testing.T) {
	defer checkNoLeaks(t)()
	block := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	srv, err := Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + srv.Addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cancel()
	err = <-done
	if took := time.Since(start); took > ShutdownTimeout+2*time.Second {
		t.Errorf("shutdown took %v with a request hanging", took)
	}
	if err != nil {
		t.Errorf("Serve after a forced close: %v", err)
	}
	close(block)
	resp.Body.Close()
}

func TestListenErrors(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, addr := range []string{srv.Addr(), "not an address", "127.0.0.1:99999"} {
		if s, err := Listen(addr, http.NotFoundHandler()); err == nil {
			s.Close()
			t.Errorf("Listen(%q) succeeded", addr)
		} else if !strings.Contains(err.Error(), addr) {
			t.Errorf("Listen(%q): %v does not name the address", addr, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := Serve(ctx, srv.Addr(), Endpoints{}); err == nil {
		t.Error("Serve on a bound address succeeded")
	}
}

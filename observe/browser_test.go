package observe

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/infonce/infonce/coordinator"
)

// chromium finds a Chromium or Chrome binary: $INFONCE_CHROMIUM, or one of
// the usual names on the PATH.
func chromium() string {
	if p := os.Getenv("INFONCE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// fakeWorker is a client that joins the coordinator and reports the
// progress of a simulated training run.
type fakeWorker struct {
	c   *coordinator.Client
	id  string
	gen uint64
}

// fakeRun drives a real coordinator through three generations with
// simulated workers: w1 and w2 train, w3 joins (3 ranks), w2 leaves (2
// ranks), and a checkpoint is committed. sample is called after every step.
// The returned function closes the clients.
func fakeRun(ctx context.Context, t *testing.T, addr string, sample func()) (closeAll func()) {
	t.Helper()
	var clients []*coordinator.Client
	closeAll = func() {
		for _, c := range clients {
			c.Close()
		}
	}
	join := func(name, data string) *fakeWorker {
		c, err := coordinator.Dial(ctx, addr, "")
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		id, err := c.Join(ctx, coordinator.JoinRequest{Name: name, DataAddr: data,
			Fingerprint: coordinator.Fingerprint{"objective": "clip", "batch": "256"}})
		if err != nil {
			t.Fatal(err)
		}
		return &fakeWorker{c: c, id: id}
	}
	next := func(ws ...*fakeWorker) {
		for _, w := range ws {
			a, err := w.c.NextAssignment(ctx, w.gen)
			if err != nil {
				t.Fatalf("%s: next assignment after %d: %v", w.id, w.gen, err)
			}
			w.gen = a.Generation
		}
	}
	train := func(from, to int64, ws ...*fakeWorker) {
		for step := from; step < to; step++ {
			for i, w := range ws {
				if _, err := w.c.Boundary(ctx, w.gen, step); err != nil {
					t.Fatalf("%s: boundary: %v", w.id, err)
				}
				loss := 2 + 4*math.Exp(-float64(step)/18) + 0.05*math.Sin(float64(3*step)+float64(i))
				rate := 256 / float64(len(ws)) * (40 + 4*math.Sin(float64(step)/3))
				if err := w.c.Report(ctx, w.gen, coordinator.Progress{Step: step + 1, Loss: loss, SamplesPerSec: rate}); err != nil {
					t.Fatalf("%s: report: %v", w.id, err)
				}
			}
			sample()
			time.Sleep(15 * time.Millisecond)
		}
	}
	w1, w2 := join("node-a", "10.0.0.1:7960"), join("node-b", "10.0.0.2:7960")
	next(w1, w2)
	train(0, 30, w1, w2)
	if err := w1.c.CommitCheckpoint(ctx, w1.gen, 30, "/runs/demo/checkpoints/step-30"); err != nil {
		t.Fatal(err)
	}
	w3 := join("node-c", "10.0.0.3:7960")
	if _, err := w1.c.Boundary(ctx, w1.gen, 30); err != nil { // admits w3
		t.Fatal(err)
	}
	next(w1, w2, w3)
	train(30, 60, w1, w2, w3)
	if err := w2.c.Leave(ctx, "scaled down"); err != nil {
		t.Fatal(err)
	}
	next(w1, w3)
	train(60, 90, w1, w3)
	return closeAll
}

func TestStatusPageInChromium(t *testing.T) {
	bin := chromium()
	if bin == "" {
		t.Skip("no Chromium binary found (apt-get install -y chromium, or set INFONCE_CHROMIUM to one)")
	}
	if testing.Short() {
		t.Skip("starts a browser; skipped with -short")
	}
	defer checkNoLeaks(t)()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cfg := coordinator.DefaultLocalConfig()
	cfg.JobID = "status-demo"
	cfg.MinWorkers, cfg.MaxWorkers = 2, 3
	cfg.DisableGossip = true
	cfg.WorkerIDPrefix = "w"
	cfg.LogInterval = 0
	cfg.Logger = quiet()
	srv, err := coordinator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stopServe := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx) }()
	defer func() {
		stopServe()
		if err := <-served; err != nil {
			t.Errorf("coordinator: %v", err)
		}
	}()

	reg := NewRegistry()
	co, err := NewCoordinator(reg, srv, CoordinatorOptions{Batch: 256, Refresh: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer fakeRun(ctx, t, srv.Addr(), co.Sample)()

	web, err := Listen("127.0.0.1:0", Handler(Endpoints{Gatherer: reg, Health: co.Health, Status: co, Logger: quiet()}))
	if err != nil {
		t.Fatal(err)
	}
	webCtx, stopWeb := context.WithCancel(ctx)
	webDone := make(chan error, 1)
	go func() { webDone <- web.Serve(webCtx) }()
	defer func() {
		stopWeb()
		if err := <-webDone; err != nil {
			t.Errorf("http: %v", err)
		}
	}()

	alloc, stopAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 1000))...)
	defer stopAlloc()
	browser, stopBrowser := chromedp.NewContext(alloc)
	defer stopBrowser()

	if err := chromedp.Do(browser,
		chromedp.Navigate("http://"+web.Addr()+"/"),
		chromedp.WaitVisible(chromedp.CSS("#members")),
	); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	title := run(t, browser, chromedp.Title())
	members := eval[int](t, browser, `document.querySelectorAll("#members tbody tr.member").length`)
	states := eval[[]string](t, browser, `Array.from(document.querySelectorAll("#members tbody tr.member .state")).map(e => e.textContent)`)
	gens := eval[int](t, browser, `document.querySelectorAll("#generations tbody tr.generation").length`)
	lines := eval[int](t, browser, `document.querySelectorAll("svg.chart polyline").length`)
	ratePolylines := eval[int](t, browser, `document.querySelectorAll("#throughput-chart polyline").length`)
	lossPoints := eval[int](t, browser, `document.querySelector("#loss-chart polyline").points.numberOfItems`)
	lossWidth := eval[float64](t, browser, `document.querySelector("#loss-chart").getBoundingClientRect().width`)
	lineWidth := eval[float64](t, browser, `document.querySelector("#loss-chart polyline").getBBox().width`)
	shot := run(t, browser, chromedp.FullScreenshot(100))
	dir := artifactDir(t, "status")
	path := filepath.Join(dir, "status.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", path, len(shot))

	want := fmt.Sprintf("infonce · %s · %s", "status-demo", "running")
	if title != want {
		t.Errorf("title %q, want %q", title, want)
	}
	if members != 3 || fmt.Sprint(states) != "[active active left]" {
		t.Errorf("members table: %d rows, states %v; want w1, w3 active and w2 left", members, states)
	}
	if gens != 3 {
		t.Errorf("%d generations listed, want 3", gens)
	}
	if lines != 3 || ratePolylines != 2 {
		t.Errorf("%d polylines (%d in the throughput chart), want the loss curve and two throughput curves", lines, ratePolylines)
	}
	if lossPoints < 30 {
		t.Errorf("the loss curve has %d points, want one per sampled report (about 90)", lossPoints)
	}
	if lossWidth < 400 || lineWidth < 300 {
		t.Errorf("loss chart drawn %.0f px wide with a curve %.0f px wide", lossWidth, lineWidth)
	}
	if len(shot) < 10000 {
		t.Errorf("screenshot of %d bytes", len(shot))
	}
}

// run runs one browser action and fails the test on an error.
func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return v
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("chromium: %s: %v", js, err)
	}
	return v
}

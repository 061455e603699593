package observe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Endpoints are what a process serves over HTTP.
type Endpoints struct {
	// Gatherer serves /metrics (nil: no /metrics).
	Gatherer prometheus.Gatherer
	// Health answers /healthz (nil: a body with only the role "unknown").
	Health func() Health
	// Status, on the coordinator, serves the status page at / and
	// /status, and its data at /status.json (nil: none).
	Status *Coordinator
	// Logger receives the server's errors (nil: slog.Default()).
	Logger *slog.Logger
}

// Handler returns the HTTP handler of e.
func Handler(e Endpoints) http.Handler {
	log := e.Logger
	if log == nil {
		log = slog.Default()
	}
	mux := http.NewServeMux()
	if e.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(e.Gatherer, promhttp.HandlerOpts{
			ErrorLog:      slogPrinter{log},
			ErrorHandling: promhttp.ContinueOnError,
		}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		h := Health{Role: "unknown", Status: "serving"}
		if e.Health != nil {
			h = e.Health()
		}
		writeJSON(w, h, log)
	})
	if e.Status != nil {
		page := func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			if err := e.Status.WritePage(w); err != nil {
				log.Warn("status page", "err", err)
			}
		}
		mux.HandleFunc("GET /{$}", page)
		mux.HandleFunc("GET /status", page)
		mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, e.Status.Snapshot(), log)
		})
	}
	return mux
}

func writeJSON(w http.ResponseWriter, v any, log *slog.Logger) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		log.Warn("observe: write json", "err", err)
	}
}

// slogPrinter adapts a logger to promhttp's ErrorLog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("metrics", "err", fmt.Sprint(v...)) }

// Server is a bound HTTP server of Endpoints.
type Server struct {
	lis  net.Listener
	http *http.Server
}

// Listen binds addr (host:port; port 0 picks a free one) for h.
func Listen(addr string, h http.Handler) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("observe: listen on %s: %w", addr, err)
	}
	return &Server{lis: lis, http: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
	}}, nil
}

// Addr is the bound host:port.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// ShutdownTimeout bounds how long Serve waits for requests in flight once
// its context ends.
const ShutdownTimeout = 2 * time.Second

// Serve answers requests until ctx ends, then shuts down (waiting at most
// ShutdownTimeout for requests in flight) and returns nil; an error of the
// listener is returned.
func (s *Server) Serve(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- s.http.Serve(s.lis) }()
	select {
	case err := <-served:
		return fmt.Errorf("observe: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	err := s.http.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.http.Close()
	}
	if e := <-served; e != nil && !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("observe: shutdown: %w", err)
	}
	return nil
}

// Close releases the listener of a server whose Serve was never called.
func (s *Server) Close() error { return s.lis.Close() }

// Serve binds addr and serves e until ctx ends (Listen, then Server.Serve).
func Serve(ctx context.Context, addr string, e Endpoints) error {
	s, err := Listen(addr, Handler(e))
	if err != nil {
		return err
	}
	return s.Serve(ctx)
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func init() {
	register("health", command{summary: "probe a process's /healthz (exit 0 when it answers 200): the container health check", run: runHealth})
}

// maxHealthBody bounds the /healthz answer that is echoed.
const maxHealthBody = 4 << 10

func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	url := fs.String("url", "", "URL of the /healthz to probe (default: from INFONCE_HTTP, the --http of the process in the same container)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	quiet := fs.Bool("quiet", false, "print nothing on success")
	if _, err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *url == "" {
		u, err := healthURLFromHTTP(os.Getenv(envName("http")))
		if err != nil {
			return usageError{err}
		}
		*url = u
	}
	if *timeout <= 0 {
		return usageError{fmt.Errorf("--timeout %v: must be positive", *timeout)}
	}
	body, err := probeHealth(ctx, *url, *timeout)
	if err != nil {
		return err
	}
	if !*quiet {
		fmt.Fprint(stdout, body)
	}
	return nil
}

// healthURLFromHTTP turns a --http listen address into the /healthz URL a
// process on the same host reaches it at.
func healthURLFromHTTP(addr string) (string, error) {
	if addr == "" {
		return "", errors.New("--url is required (or INFONCE_HTTP, the --http address of the process to probe)")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("INFONCE_HTTP=%q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}

// probeHealth GETs url and succeeds on a 200 within timeout, returning the
// body (at most maxHealthBody bytes).
func probeHealth(ctx context.Context, url string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", usageError{fmt.Errorf("--url %q: %w", url, err)}
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("unhealthy: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxHealthBody))
	if err != nil {
		return "", fmt.Errorf("unhealthy: %s: reading the answer: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("unhealthy: %s answered %s", url, resp.Status)
	}
	return string(b), nil
}

package testcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Package is the import path of the binary Build compiles.
const Package = "github.com/infonce/infonce/cmd/infonce"

// BuildOptions selects a build of the binary.
type BuildOptions struct {
	// Production builds the binary as `make build` does: static
	// (CGO_ENABLED=0), -trimpath, and without the faultinject tag, for
	// tests of the deployable artefact (container images, launch scripts).
	Production bool
}

// args are the go build flags of o.
func (o BuildOptions) args(out string) []string {
	if o.Production {
		return []string{"build", "-trimpath", "-o", out, Package}
	}
	// Fault injection through INFONCE_FAULT_* variables is compiled in
	// only with the faultinject tag, so that a production binary ignores
	// them; the tests that drive a cluster into failures need it.
	return []string{"build", "-tags", "faultinject", "-o", out, Package}
}

func (o BuildOptions) name() string {
	if o.Production {
		return "infonce-production"
	}
	return "infonce-faultinject"
}

type build struct {
	once sync.Once
	path string
	err  error
}

var (
	buildMu   sync.Mutex
	buildDir  string
	builds    = map[BuildOptions]*build{}
	buildTime = map[BuildOptions]time.Duration{}
)

// Binary returns the test build of the infonce binary (with the
// faultinject tag), building it on first use.
func Binary(ctx context.Context) (string, error) { return Build(ctx, BuildOptions{}) }

// Build returns the binary built with o (a file named infonce), building
// it on the first call for o; later calls return the same file. The directory of the builds is
// readable by every user (a test may run workers as another user) and is
// removed by Cleanup.
func Build(ctx context.Context, o BuildOptions) (string, error) {
	buildMu.Lock()
	b := builds[o]
	if b == nil {
		b = &build{}
		builds[o] = b
	}
	buildMu.Unlock()
	b.once.Do(func() {
		dir, err := binDir()
		if err != nil {
			b.err = err
			return
		}
		sub := filepath.Join(dir, o.name())
		if err := os.Mkdir(sub, 0o755); err != nil {
			b.err = fmt.Errorf("testcluster: %w", err)
			return
		}
		path := filepath.Join(sub, "infonce")
		cmd := exec.CommandContext(ctx, goTool(), o.args(path)...)
		cmd.Env = os.Environ()
		if o.Production {
			cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
		}
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go %s: %w\n%s", strings.Join(o.args(path), " "), err, out)
			return
		}
		buildMu.Lock()
		buildTime[o] = time.Since(start)
		buildMu.Unlock()
		b.path = path
	})
	return b.path, b.err
}

// BuildTime is how long the build with o took (0 before it was built).
func BuildTime(o BuildOptions) time.Duration {
	buildMu.Lock()
	defer buildMu.Unlock()
	return buildTime[o]
}

// binDir creates the directory of the builds once.
func binDir() (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		return buildDir, nil
	}
	dir, err := os.MkdirTemp("", "infonce-testcluster-bin-")
	if err != nil {
		return "", fmt.Errorf("testcluster: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("testcluster: %w", err)
	}
	buildDir = dir
	return dir, nil
}

// Cleanup removes the binaries Build wrote; call it from TestMain after
// the tests ran.
func Cleanup() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
		buildDir = ""
		builds = map[BuildOptions]*build{}
	}
}

// goTool is the go command: on PATH, else the one of this toolchain.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

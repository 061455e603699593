package deploy

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/infonce/infonce/internal/testcluster"
)

// repoRoot is the repository's top directory (this package is deploy/).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test's source file")
	}
	return filepath.Dir(filepath.Dir(file))
}

// run runs a command and returns its combined output; it fails the test
// when the command fails.
func run(t testing.TB, ctx context.Context, env []string, dir string, name string, args ...string) string {
	t.Helper()
	out, err := tryRun(ctx, env, dir, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(out, 4000))
	}
	return out
}

// tryRun runs a command and returns its combined output and error.
func tryRun(ctx context.Context, env []string, dir string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = env
	}
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return buf.String(), err
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// needDocker skips the test when no Docker engine answers.
func needDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Docker containers; skipped with -short")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not installed (no docker in PATH)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := tryRun(ctx, nil, "", "docker", "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("no Docker engine answers (docker info: %v: %s)", err, strings.TrimSpace(tail(out, 300)))
	}
}

// composeCommand returns the Compose tool of this machine: the docker
// compose plugin, else docker-compose (v1); it skips the test when there
// is neither.
func composeCommand(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := tryRun(ctx, nil, "", "docker", "compose", "version"); err == nil {
		return []string{"docker", "compose"}
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	t.Skip("neither the docker compose plugin nor docker-compose is installed")
	return nil
}

// buildBinary returns the static infonce binary of this test run, built
// once as `make image` builds it (CGO_ENABLED=0, -trimpath, no test-only
// build tags); TestMain removes it.
func buildBinary(t *testing.T, ctx context.Context) string {
	t.Helper()
	bin, err := testcluster.Build(ctx, testcluster.BuildOptions{Production: true})
	if err != nil {
		t.Fatalf("go build ./cmd/infonce: %s", tail(err.Error(), 4000))
	}
	return bin
}

// buildImage builds the repository's Dockerfile exactly as `make image`
// does, from a context holding the static binary and two empty
// directories, and tags it with a name unique to this test. The image is
// removed when the test ends.
func buildImage(t *testing.T, ctx context.Context) (tag, bin string) {
	t.Helper()
	dir := t.TempDir()
	bin = buildBinary(t, ctx)
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "infonce"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"tmp", "run"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	df, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o644); err != nil {
		t.Fatal(err)
	}
	tag = fmt.Sprintf("infonce:test-%d-%d", os.Getpid(), rand.IntN(1_000_000))
	run(t, ctx, nil, dir, "docker", "build", "-q", "-t", tag, dir)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = tryRun(ctx, nil, "", "docker", "rmi", "-f", tag)
	})
	return tag, bin
}

// copyFromContainer reads one file out of a container (running or not)
// through `docker cp`, which works with any Docker engine, local or not.
func copyFromContainer(ctx context.Context, container, path string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "docker", "cp", container+":"+path, "-")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("docker cp %s:%s: %w: %s", container, path, err, strings.TrimSpace(errb.String()))
	}
	tr := tar.NewReader(&out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("docker cp %s:%s: no file in the archive", container, path)
		}
		if err != nil {
			return nil, fmt.Errorf("docker cp %s:%s: %w", container, path, err)
		}
		if h.Typeflag == tar.TypeReg {
			return io.ReadAll(tr)
		}
	}
}

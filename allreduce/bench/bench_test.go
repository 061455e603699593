package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const peerEnv = "INFONCE_BENCH_TEST_PEER"

func TestMain(m *testing.M) {
	if os.Getenv(peerEnv) != "" {
		if err := Peer(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "peer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testSpawner(t *testing.T) Spawner {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context, args []string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, exe, args...)
		cmd.Env = append(os.Environ(), peerEnv+"=1")
		return cmd
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{"4096", 4096, false},
		{"4KiB", 4096, false},
		{"64MiB", 64 << 20, false},
		{"1GiB", 1 << 30, false},
		{"16M", 16 << 20, false},
		{"2KB", 2000, false},
		{"12B", 12, false},
		{"-1", 0, true},
		{"x", 0, true},
		{"", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, bad=%v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

// runRows runs the benchmark with args and --json js and returns the rows
// of the JSON file and the printed table.
func runRows(t *testing.T, js string, args ...string) ([]Row, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if err := Main(context.Background(), append(args, "--json", js), &out, &errb, testSpawner(t)); err != nil {
		t.Fatalf("%v\nstderr: %s", err, errb.String())
	}
	var rows []Row
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatal(err)
	}
	return rows, out.String()
}

func TestMainRunsEveryOp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes; skipped in -short mode")
	}
	dir := t.TempDir()
	for _, op := range []string{"allreduce", "allgather", "reducescatter", "broadcast", "fused", "tcp"} {
		t.Run(op, func(t *testing.T) {
			rows, out := runRows(t, filepath.Join(dir, op+".json"),
				"--op", op, "--workers", "1,3", "--sizes", "4KiB,100KiB", "--iters", "10", "--warmup", "1", "--bucket", "32KiB")
			wantRows := 4
			if op == "tcp" {
				wantRows = 2
			}
			if len(rows) != wantRows {
				t.Fatalf("%d rows, want %d:\n%s", len(rows), wantRows, out)
			}
			for _, r := range rows {
				if r.Op != op || r.SecondsMedian <= 0 || r.AlgbwGBps <= 0 || r.Bytes <= 0 {
					t.Fatalf("bad row %+v", r)
				}
				k := float64(r.Workers)
				want := map[string]float64{"allreduce": 2 * (k - 1) / k, "fused": 2 * (k - 1) / k, "allgather": (k - 1) / k,
					"reducescatter": (k - 1) / k, "broadcast": 1, "tcp": 1}[op]
				if got := r.BusbwGBps / r.AlgbwGBps; got < want-1e-9 || got > want+1e-9 {
					t.Fatalf("busbw/algbw = %v, want %v", got, want)
				}
			}
			if !strings.Contains(out, "busbw") {
				t.Fatalf("no table header in\n%s", out)
			}
		})
	}
}

// TestMainInPlace: with --in-place the workers' data live in shared
// vectors that a shared-memory ring sums in place, and the rows say so.
func TestMainInPlace(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes; skipped in -short mode")
	}
	if runtime.GOOS != "linux" {
		t.Skip("shared-memory rings are built on Linux only")
	}
	if _, err := os.Stat("/dev/shm"); err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	for _, op := range []string{"allreduce", "fused"} {
		t.Run(op, func(t *testing.T) {
			rows, out := runRows(t, filepath.Join(t.TempDir(), "rows.json"), "--op", op, "--transport", "shm", "--in-place",
				"--workers", "2,3", "--sizes", "4KiB,100KiB", "--iters", "10", "--warmup", "1", "--bucket", "32KiB")
			if len(rows) != 4 {
				t.Fatalf("%d rows, want 4:\n%s", len(rows), out)
			}
			for _, r := range rows {
				if r.Transport != "shm+in-place" || r.SecondsMedian <= 0 {
					t.Fatalf("bad row %+v", r)
				}
			}
		})
	}
}

// TestMainDefaultsToWorkersDataPlane: without --transport the benchmark
// takes the data plane training workers take (allreduce.ChooseTransport
// without TLS: shared memory between these processes, summing in place
// where the op and wire allow it), and says which it used.
func TestMainDefaultsToWorkersDataPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes; skipped in -short mode")
	}
	if runtime.GOOS != "linux" {
		t.Skip("shared-memory rings are built on Linux only")
	}
	if _, err := os.Stat("/dev/shm"); err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--op", "allreduce"}, "shm+in-place"},
		{[]string{"--op", "fused", "--bucket", "32KiB"}, "shm+in-place"},
		{[]string{"--op", "allreduce", "--wire", "bf16"}, "shm"},
		{[]string{"--op", "allgather"}, "shm"},
		{[]string{"--op", "allreduce", "--in-place=false"}, "shm"},
		{[]string{"--op", "allreduce", "--transport", "grpc"}, "grpc"},
		{[]string{"--op", "allreduce", "--transport", "tcp"}, "tcp"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			rows, out := runRows(t, filepath.Join(t.TempDir(), "rows.json"), append(tc.args,
				"--workers", "2", "--sizes", "100KiB", "--iters", "10", "--warmup", "1")...)
			if len(rows) != 1 || rows[0].Transport != tc.want {
				t.Fatalf("rows %+v, want one on %s:\n%s", rows, tc.want, out)
			}
			if !strings.Contains(out, "# transport used: "+tc.want+"\n") {
				t.Fatalf("the table does not name the transport %s:\n%s", tc.want, out)
			}
		})
	}
}

func TestMainRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--op", "nope"}, {"--iters", "3"}, {"--sizes", "x"}, {"--workers", "0"},
		{"--in-place", "--transport", "tcp"}, {"--in-place", "--transport", "shm", "--op", "allgather"},
		{"--in-place", "--op", "allgather"}, {"--in-place=maybe"}} {
		err := Main(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}, testSpawner(t))
		if _, ok := err.(UsageError); !ok {
			t.Errorf("%v: %v, want a UsageError", args, err)
		}
	}
}

func ExampleParseSize() {
	for _, s := range []string{"4KiB", "64MiB", "1000"} {
		n, _ := ParseSize(s)
		fmt.Println(n)
	}
	// Output:
	// 4096
	// 67108864
	// 1000
}

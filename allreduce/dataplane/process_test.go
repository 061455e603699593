package dataplane

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infonce/infonce/allreduce"
	"github.com/infonce/infonce/allreduce/shm"
)

// childEnv switches the test binary into a ring worker (see runChild).
const childEnv = "ALLREDUCE_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		if err := runChild(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild is one worker process: it prints "ADDR a", reads "PEERS
// rank transport timeout-ns a,b,c", then all-reduces until an error, printing "ITER i"
// after each success and finally "ERR <kind> <seconds> <message>".
func runChild() error {
	srv, err := Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Printf("ADDR %s\n", srv.Addr())
	var rank int
	var transport, list string
	var timeout time.Duration
	if _, err := fmt.Fscanf(bufio.NewReader(os.Stdin), "PEERS %d %s %d %s\n", &rank, &transport, &timeout, &list); err != nil {
		return fmt.Errorf("reading peers: %w", err)
	}
	cfg := allreduce.Config{JobID: "proc", Generation: 4, Rank: rank, Peers: strings.Split(list, ","), Transport: transport,
		Timeout: timeout, ChunkBytes: 64 << 10}
	buf := make([]float32, 1<<18)
	inPlace := transport == transportInPlace
	if inPlace {
		// A shared-memory ring whose all-reduces sum shared vectors in place.
		v, err := shm.NewSharedVector(len(buf))
		if err != nil {
			return err
		}
		defer v.Close()
		cfg.Transport, cfg.Shared, buf = allreduce.TransportSHM, v, v.Floats()
	}
	ctx := context.Background()
	r, err := NewRing(ctx, srv, cfg)
	if err != nil {
		return err
	}
	defer r.Close()
	if r.InPlace() != inPlace {
		return fmt.Errorf("in-place all-reduce %v, want %v", r.InPlace(), inPlace)
	}
	for i := 0; ; i++ {
		err := r.AllReduce(ctx, buf)
		if err != nil {
			at := time.Now()
			kind := "other"
			var pe *allreduce.PeerError
			switch {
			case !errors.As(err, &pe) || pe.Op != "allreduce" || pe.Generation != 4:
				kind = "untyped"
			case errors.Is(err, allreduce.ErrPeerLost):
				kind = "peerlost"
			case errors.Is(err, allreduce.ErrDeadline):
				kind = "deadline"
			}
			fmt.Printf("ERR %s %d %v\n", kind, at.UnixNano(), err)
			return nil
		}
		fmt.Printf("ITER %d\n", i)
	}
}

// transportInPlace names, for the child processes, a allreduce.TransportSHM ring
// with shared vectors (in-place all-reduces).
const transportInPlace = "shm-in-place"

// TestPeerProcessFailure runs three worker processes and either kills one
// (SIGKILL: its neighbours see the connection drop, everyone fails with
// allreduce.ErrPeerLost within milliseconds) or stops one (SIGSTOP: nothing arrives,
// everyone fails by the deadline).
func TestPeerProcessFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes; skipped in -short mode")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		transport string
		signal    syscall.Signal
		timeout   time.Duration
		kinds     string // acceptable error kinds
	}{
		{allreduce.TransportGRPC, syscall.SIGKILL, 5 * time.Second, "peerlost"},
		{allreduce.TransportTCP, syscall.SIGKILL, 5 * time.Second, "peerlost"},
		{allreduce.TransportGRPC, syscall.SIGSTOP, time.Second, "deadline peerlost"},
		{allreduce.TransportTCP, syscall.SIGSTOP, time.Second, "deadline peerlost"},
		{allreduce.TransportSHM, syscall.SIGKILL, 5 * time.Second, "peerlost"},
		{allreduce.TransportSHM, syscall.SIGSTOP, time.Second, "deadline peerlost"},
		{transportInPlace, syscall.SIGKILL, 5 * time.Second, "peerlost"},
		{transportInPlace, syscall.SIGSTOP, time.Second, "deadline peerlost"},
	}
	for _, tc := range tests {
		transport := tc.transport
		t.Run(transport+"/"+tc.signal.String(), func(t *testing.T) {
			const k, victim = 3, 1
			type child struct {
				cmd   *exec.Cmd
				lines chan string
			}
			kids := make([]*child, k)
			addrs := make([]string, k)
			stdins := make([]*os.File, k)
			for i := range kids {
				cmd := exec.Command(exe, "-test.run=^$")
				cmd.Env = append(os.Environ(), childEnv+"=1")
				cmd.Stderr = os.Stderr
				pr, pw, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				cmd.Stdin = pr
				stdins[i] = pw
				out, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				pr.Close()
				c := &child{cmd: cmd, lines: make(chan string, 1024)}
				go func() {
					sc := bufio.NewScanner(out)
					for sc.Scan() {
						c.lines <- sc.Text()
					}
					close(c.lines)
				}()
				kids[i] = c
				t.Cleanup(func() {
					cmd.Process.Signal(syscall.SIGCONT)
					cmd.Process.Kill()
					cmd.Wait()
					pw.Close()
				})
				select {
				case l := <-c.lines:
					addrs[i] = strings.TrimPrefix(l, "ADDR ")
				case <-time.After(10 * time.Second):
					t.Fatal("child did not report its address")
				}
			}
			for i, w := range stdins {
				fmt.Fprintf(w, "PEERS %d %s %d %s\n", i, transport, tc.timeout, strings.Join(addrs, ","))
			}
			// wait until every worker has completed a few all-reduces
			for i, c := range kids {
				for {
					l, ok := <-c.lines
					if !ok {
						t.Fatalf("child %d exited early", i)
					}
					if l == "ITER 2" {
						break
					}
					if strings.HasPrefix(l, "ERR") {
						t.Fatalf("child %d: %s", i, l)
					}
				}
			}
			kill := time.Now()
			kids[victim].cmd.Process.Signal(tc.signal)
			for i, c := range kids {
				if i == victim {
					continue
				}
				var last string
				for l := range c.lines {
					last = l
				}
				var kind string
				var at int64
				if _, err := fmt.Sscanf(last, "ERR %s %d", &kind, &at); err != nil {
					t.Fatalf("child %d ended with %q", i, last)
				}
				took := time.Unix(0, at).Sub(kill)
				// the deadline of the operation in progress at the signal
				// can end at most one timeout after it
				if !strings.Contains(tc.kinds, kind) || took > tc.timeout+500*time.Millisecond {
					t.Fatalf("child %d: %q after %v, want a %s *allreduce.PeerError within the %v deadline", i, last, took, tc.kinds, tc.timeout)
				}
				t.Logf("child %d failed %v after the signal: %s", i, took, last)
			}
		})
	}
}

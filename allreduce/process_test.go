package allreduce

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
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
// rank transport a,b,c", then all-reduces until an error, printing "ITER i"
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
	if _, err := fmt.Fscanf(bufio.NewReader(os.Stdin), "PEERS %d %s %s\n", &rank, &transport, &list); err != nil {
		return fmt.Errorf("reading peers: %w", err)
	}
	cfg := Config{JobID: "proc", Generation: 4, Rank: rank, Peers: strings.Split(list, ","), Transport: transport,
		Timeout: 5 * time.Second, ChunkBytes: 64 << 10}
	ctx := context.Background()
	r, err := NewRing(ctx, srv, cfg)
	if err != nil {
		return err
	}
	defer r.Close()
	buf := make([]float32, 1<<18)
	for i := 0; ; i++ {
		err := r.AllReduce(ctx, buf)
		if err != nil {
			at := time.Now()
			kind := "other"
			var pe *PeerError
			switch {
			case !errors.As(err, &pe) || pe.Op != "allreduce" || pe.Generation != 4:
				kind = "untyped"
			case errors.Is(err, ErrPeerLost):
				kind = "peerlost"
			case errors.Is(err, ErrDeadline):
				kind = "deadline"
			}
			fmt.Printf("ERR %s %d %v\n", kind, at.UnixNano(), err)
			return nil
		}
		fmt.Printf("ITER %d\n", i)
	}
}

func TestPeerProcessKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes; skipped in -short mode")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, transport := range []string{TransportGRPC, TransportTCP} {
		t.Run(transport, func(t *testing.T) {
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
				t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); pw.Close() })
				select {
				case l := <-c.lines:
					addrs[i] = strings.TrimPrefix(l, "ADDR ")
				case <-time.After(10 * time.Second):
					t.Fatal("child did not report its address")
				}
			}
			for i, w := range stdins {
				fmt.Fprintf(w, "PEERS %d %s %s\n", i, transport, strings.Join(addrs, ","))
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
			kids[victim].cmd.Process.Kill()
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
				if kind != "peerlost" || took > 5*time.Second {
					t.Fatalf("child %d: %q after %v, want a peer-lost *PeerError before the 5s deadline", i, last, took)
				}
				t.Logf("child %d failed %v after the kill: %s", i, took, last)
			}
		})
	}
}

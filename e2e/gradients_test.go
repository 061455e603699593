package e2e

import (
	le "encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/infonce/infonce/internal/testcluster"
	"github.com/infonce/infonce/worker"
)

// readDump reads a gradient and a loss written under worker.EnvDumpGrads.
func readDump(t *testing.T, dir string, step int64, rank int) ([]float32, float64) {
	t.Helper()
	name := filepath.Join(dir, fmt.Sprintf("grad-step%d-rank%d", step, rank))
	b, err := os.ReadFile(name + ".f32")
	if err != nil {
		t.Fatal(err)
	}
	g := make([]float32, len(b)/4)
	for i := range g {
		g[i] = math.Float32frombits(le.LittleEndian.Uint32(b[4*i:]))
	}
	lb, err := os.ReadFile(name + ".loss")
	if err != nil {
		t.Fatal(err)
	}
	loss, err := strconv.ParseFloat(string(lb), 64)
	if err != nil {
		t.Fatal(err)
	}
	return g, loss
}

// TestGradientsOfRealProcesses is the equivalence test with real worker
// processes and sockets: three workers (uneven shares of the global batch
// of 100: 34, 33, 33) hold, after the reduction of step 0, the loss and
// the gradient of every parameter, the logit scale's included, of one
// process with the whole batch, within 1e-5 relative in float32; and every
// rank holds the same bits. CLIP, SimCLR and MoCo, with the gradient
// reduced in small buckets during the backward pass.
func TestGradientsOfRealProcesses(t *testing.T) {
	needSetup(t)
	for _, objective := range []string{worker.CLIP, worker.SimCLR, worker.MoCo} {
		t.Run(objective, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"train", "--objective", objective, "--data", "idx:" + dataDir, "--batch", "100",
				"--hidden", "64", "--text-hidden", "32", "--dim", "16", "--steps", "1", "--no-eval",
				"--learn-temperature", "--moco-queue", "200", "--bucket-kib", "4"}
			run := func(name string, extra ...string) string {
				dump := filepath.Join(dir, name)
				if err := os.MkdirAll(dump, 0o755); err != nil {
					t.Fatal(err)
				}
				env := []string{worker.EnvDumpGrads + "=" + dump + ":0"}
				a := append(append(append([]string{}, args...), "--out", filepath.Join(dir, name+"-run")), extra...)
				p := start(t, dir, name, env, a...)
				if err := p.Wait(t, 2*time.Minute); err != nil {
					t.Fatalf("%s: %v\n%s", name, err, testcluster.Tail(p.Output(), 30))
				}
				return dump
			}
			one := run("one")
			three := run("three", "--workers", "3")
			want, wantLoss := readDump(t, one, 0, 0)
			var first []float32
			for rank := range 3 {
				got, loss := readDump(t, three, 0, rank)
				if len(got) != len(want) {
					t.Fatalf("rank %d: %d gradients, the single process %d", rank, len(got), len(want))
				}
				if d := math.Abs(loss-wantLoss) / math.Abs(wantLoss); d > 1e-5 {
					t.Errorf("rank %d: loss %v, single process %v (rel %.2g)", rank, loss, wantLoss, d)
				}
				var diff, size float64
				for i := range got {
					diff = math.Max(diff, math.Abs(float64(got[i])-float64(want[i])))
					size = math.Max(size, math.Abs(float64(want[i])))
				}
				if diff/size > 1e-5 {
					t.Errorf("rank %d: gradient differs from the single process by %.2g relative", rank, diff/size)
				}
				// The logit scale is the last parameter.
				ls := len(got) - 1
				if d := math.Abs(float64(got[ls]-want[ls])) / math.Max(math.Abs(float64(want[ls])), 1e-12); d > 1e-4 {
					t.Errorf("rank %d: dL/dt %v, single process %v", rank, got[ls], want[ls])
				}
				if first == nil {
					first = got
					t.Logf("gradient of %d parameters within %.2g relative of the single process; loss %v vs %v", len(got), diff/size, loss, wantLoss)
					continue
				}
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(first[i]) {
						t.Errorf("rank %d holds another gradient than rank 0 at %d: %v vs %v", rank, i, got[i], first[i])
						break
					}
				}
			}
		})
	}
}

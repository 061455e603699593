package model

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/infonce/infonce/gemm"
)

// attentionRun is what one Forward and Backward of an attention layer
// produce: y, ∂L/∂x and the parameter gradients, in that order.
func attentionRun[T gemm.Float](t *testing.T, a *MultiHeadAttention[T], params []paramRef[T], x, r []T, b int) [][]T {
	t.Helper()
	for _, p := range params {
		clear(p.g)
	}
	y, err := a.Forward(x, b)
	if err != nil {
		t.Fatal(err)
	}
	y = append([]T(nil), y...)
	dx, err := a.Backward(r)
	if err != nil {
		t.Fatal(err)
	}
	out := [][]T{y, append([]T(nil), dx...)}
	for _, p := range params {
		out = append(out, append([]T(nil), p.g...))
	}
	return out
}

// testAttentionParallelBits runs one layer with GOMAXPROCS 1, 2, 3 and 1
// again and requires the same bits of y, ∂L/∂x and every parameter
// gradient each time, with the pairs split into 2 and 3 parts.
func testAttentionParallelBits[T gemm.Float](t *testing.T, d, h, l, block, b int, causal bool) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	bl := &builder[T]{rng: rand.New(rand.NewPCG(uint64(l), uint64(d)))}
	a := bl.attention(d, h, l, causal, block)
	x, r := randT[T](bl.rng, b*l*d), randT[T](bl.rng, b*l*d)
	scaleRow(x, 2) // peaked softmaxes: the running maximum moves
	names := []string{"y", "dx"}
	for _, p := range bl.params {
		names = append(names, p.name)
	}
	var want [][]T
	for _, procs := range []int{1, 2, 3, 1} {
		runtime.GOMAXPROCS(procs)
		n, minPer := a.pairs(b)
		if P := a.par.numParts(n, minPer); P != procs {
			t.Fatalf("GOMAXPROCS %d: %d pairs in %d parts, want %d", procs, n, P, procs)
		}
		got := attentionRun(t, a, bl.params, x, r, b)
		if want == nil {
			want = got
			continue
		}
		for i := range want {
			for j := range want[i] {
				if math.Float64bits(float64(got[i][j])) != math.Float64bits(float64(want[i][j])) {
					t.Errorf("GOMAXPROCS %d: %s[%d] = %v, with one goroutine %v", procs, names[i], j, got[i][j], want[i][j])
					break
				}
			}
		}
	}
}

// TestAttentionParallelBits checks that splitting the (sequence, head)
// pairs over goroutines changes no bit of the result, in float32 and
// float64, with and without the causal mask, for partial blocks (L = 37 in
// blocks of 16) and for the ViT shape (65 tokens, blocks of 64 and 1).
func TestAttentionParallelBits(t *testing.T) {
	for _, causal := range []bool{false, true} {
		testAttentionParallelBits[float32](t, 16, 2, 37, 16, 9, causal)
		testAttentionParallelBits[float64](t, 16, 2, 37, 16, 9, causal)
		testAttentionParallelBits[float32](t, 192, 3, 65, 0, 2, causal)
		testAttentionParallelBits[float64](t, 192, 3, 65, 0, 2, causal)
	}
}

// TestAttentionParallelNoAlloc checks that a float32 Forward and Backward
// whose pairs are split over two goroutines allocate nothing once the
// scratch space exists.
func TestAttentionParallelNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	const b = 4
	bl := &builder[float32]{rng: rand.New(rand.NewPCG(7, 8))}
	a := bl.attention(64, 2, 40, true, 16)
	x, r := randT[float32](bl.rng, b*40*64), randT[float32](bl.rng, b*40*64)
	if n, minPer := a.pairs(b); a.par.numParts(n, minPer) != 2 {
		t.Fatalf("%d pairs not split in two", n)
	}
	step := func() {
		if _, err := a.Forward(x, b); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Backward(r); err != nil {
			t.Fatal(err)
		}
	}
	step()
	if allocs := testing.AllocsPerRun(10, step); allocs != 0 {
		t.Errorf("%v allocations per Forward+Backward after warm-up", allocs)
	}
}

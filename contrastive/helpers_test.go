package contrastive

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/infonce/infonce/gemm"
)

// memHub connects K in-memory ranks: every AllGather is a deposit, a
// barrier, a copy of every deposit, and a second barrier (so that no rank
// reuses its send buffer while another still reads it).
type memHub struct {
	size    int
	mu      sync.Mutex
	sends   [][]byte
	arrived int
	done    chan struct{}
}

func newMemHub(k int) *memHub {
	return &memHub{size: k, sends: make([][]byte, k), done: make(chan struct{})}
}

// barrier returns when every rank has reached it (or ctx is done).
func (h *memHub) barrier(ctx context.Context) error {
	h.mu.Lock()
	ch := h.done
	h.arrived++
	if h.arrived == h.size {
		h.arrived = 0
		h.done = make(chan struct{})
		close(ch)
	}
	h.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// memColl is rank `rank` of a memHub; it satisfies Collective.
type memColl struct {
	hub  *memHub
	rank int
}

func (c memColl) Rank() int { return c.rank }
func (c memColl) Size() int { return c.hub.size }

func (c memColl) AllGather(ctx context.Context, send, recv []byte, counts []int) error {
	if len(counts) != c.hub.size || counts[c.rank] != len(send) {
		return fmt.Errorf("memcoll: rank %d sends %d bytes, counts %v", c.rank, len(send), counts)
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	if total != len(recv) {
		return fmt.Errorf("memcoll: recv %d bytes, counts sum to %d", len(recv), total)
	}
	c.hub.mu.Lock()
	c.hub.sends[c.rank] = send
	c.hub.mu.Unlock()
	if err := c.hub.barrier(ctx); err != nil {
		return err
	}
	off := 0
	for r := 0; r < c.hub.size; r++ {
		if len(c.hub.sends[r]) != counts[r] {
			return fmt.Errorf("memcoll: rank %d sent %d bytes, counts say %d", r, len(c.hub.sends[r]), counts[r])
		}
		copy(recv[off:], c.hub.sends[r])
		off += counts[r]
	}
	return c.hub.barrier(ctx)
}

// Shift is one hop of a ring exchange: rank r receives rank r−1's send.
func (c memColl) Shift(ctx context.Context, send, recv []byte) error {
	c.hub.mu.Lock()
	c.hub.sends[c.rank] = send
	c.hub.mu.Unlock()
	if err := c.hub.barrier(ctx); err != nil {
		return err
	}
	left := c.hub.sends[(c.rank+c.hub.size-1)%c.hub.size]
	if len(left) != len(recv) {
		return fmt.Errorf("memcoll: shift: rank %d expects %d bytes, its left neighbour sent %d", c.rank, len(recv), len(left))
	}
	copy(recv, left)
	return c.hub.barrier(ctx)
}

// runRanks runs f on K in-memory ranks concurrently and returns the first
// error. It returns only after every rank's goroutine has finished.
func runRanks(k int, f func(rank int, coll Collective) error) error {
	hub := newMemHub(k)
	errs := make([]error, k)
	var wg sync.WaitGroup
	for r := 0; r < k; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = f(r, memColl{hub: hub, rank: r})
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			return fmt.Errorf("rank %d: %w", r, err)
		}
	}
	return nil
}

// unitRows returns rows random unit vectors of dimension d.
func unitRows(rng *rand.Rand, rows, d int) []float64 {
	x := make([]float64, rows*d)
	for i := 0; i < rows; i++ {
		var n float64
		for j := 0; j < d; j++ {
			v := rng.NormFloat64()
			x[i*d+j] = v
			n += v * v
		}
		n = 1 / math.Sqrt(n)
		for j := 0; j < d; j++ {
			x[i*d+j] *= n
		}
	}
	return x
}

func conv[T gemm.Float](x []float64) []T {
	y := make([]T, len(x))
	for i, v := range x {
		y[i] = T(v)
	}
	return y
}

func to64[T gemm.Float](x []T) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// offsets returns the first row of every rank.
func offsets(counts []int) []int {
	off := make([]int, len(counts)+1)
	for r, c := range counts {
		off[r+1] = off[r] + c
	}
	return off
}

// rows returns rows [lo, hi) of a row-major matrix of width d.
func rows[T any](x []T, lo, hi, d int) []T { return x[lo*d : hi*d] }

// relErr is max_i |a_i − b_i| / max(max_i |b_i|, tiny): an error relative
// to the size of the reference.
func relErr(a, b []float64) float64 {
	var num, den float64
	for i := range b {
		num = max(num, math.Abs(a[i]-b[i]))
		den = max(den, math.Abs(b[i]))
	}
	return num / max(den, 1e-300)
}

func relErr1(a, b float64) float64 { return relErr([]float64{a}, []float64{b}) }

// --- float64 references, straight from the formulas over the full matrix.

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func naiveLSE(x []float64) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = max(m, v)
	}
	var z float64
	for _, v := range x {
		z += math.Exp(v - m)
	}
	return m + math.Log(z)
}

// clipRef is L = 1/(2B)·Σ_i [lse_j S_ij − lse_{j∈P(i)} S_ij] + the same
// over columns, P(i) = {i} without ids.
func clipRef(u, v []float64, B, d int, s float64, ids []int32) float64 {
	S := make([]float64, B*B)
	for i := 0; i < B; i++ {
		for j := 0; j < B; j++ {
			S[i*B+j] = s * dot(u[i*d:i*d+d], v[j*d:j*d+d])
		}
	}
	pos := func(i, j int) bool {
		if ids == nil {
			return i == j
		}
		return ids[i] == ids[j]
	}
	var L float64
	for i := 0; i < B; i++ {
		var all, ps, allc, psc []float64
		for j := 0; j < B; j++ {
			all = append(all, S[i*B+j])
			allc = append(allc, S[j*B+i])
			if pos(i, j) {
				ps = append(ps, S[i*B+j])
				psc = append(psc, S[j*B+i])
			}
		}
		L += naiveLSE(all) - naiveLSE(ps) + naiveLSE(allc) - naiveLSE(psc)
	}
	return L / float64(2*B)
}

// ntxentRef is 1/(2B)·Σ_a [lse_{m≠a} S_am − S_a,p(a)] over z = [z1; z2].
func ntxentRef(z1, z2 []float64, B, d int, s float64) float64 {
	z := append(append([]float64(nil), z1...), z2...)
	N := 2 * B
	var L float64
	for a := 0; a < N; a++ {
		var row []float64
		for m := 0; m < N; m++ {
			if m != a {
				row = append(row, s*dot(z[a*d:a*d+d], z[m*d:m*d+d]))
			}
		}
		p := (a + B) % N
		L += naiveLSE(row) - s*dot(z[a*d:a*d+d], z[p*d:p*d+d])
	}
	return L / float64(N)
}

// ctrRef is 1/B·Σ_i [lse(s·q_i·k_i, s·q_i·queue_j...) − s·q_i·k_i].
func ctrRef(q, k, queue []float64, B, d int, s float64) float64 {
	K := len(queue) / d
	var L float64
	for i := 0; i < B; i++ {
		qi := q[i*d : i*d+d]
		row := []float64{s * dot(qi, k[i*d:i*d+d])}
		for j := 0; j < K; j++ {
			row = append(row, s*dot(qi, queue[j*d:j*d+d]))
		}
		L += naiveLSE(row) - row[0]
	}
	return L / float64(B)
}

// fdGrad is the central-difference gradient of f with respect to every
// element of x (x is restored afterwards).
func fdGrad(x []float64, h float64, f func() float64) []float64 {
	g := make([]float64, len(x))
	for i := range x {
		x0 := x[i]
		x[i] = x0 + h
		fp := f()
		x[i] = x0 - h
		fm := f()
		x[i] = x0
		g[i] = (fp - fm) / (2 * h)
	}
	return g
}

// fdT is the central-difference derivative of f(exp(t)) at t.
func fdT(t, h float64, f func(s float64) float64) float64 {
	return (f(math.Exp(t+h)) - f(math.Exp(t-h))) / (2 * h)
}

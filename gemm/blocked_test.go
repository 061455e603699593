package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"
)

// kernelCase is one float32 kernel under test; skip says why it cannot run.
type kernelCase struct {
	name string
	k    Kernel32
	skip string
}

// withBlocks is g with other cache blocks, to drive many blocks through
// small products.
func withBlocks(g *Blocked, mc, kc, nc int) *Blocked {
	return &Blocked{name: fmt.Sprintf("%s/%d-%d-%d", g.name, mc, kc, nc), mr: g.mr, nr: g.nr, mc: mc, kc: kc, nc: nc, micro: g.micro, transpose8: g.transpose8, transpose6: g.transpose6, copyA: g.copyA, copyB: g.copyB}
}

func kernelCases() []kernelCase {
	cases := []kernelCase{
		{name: "gonum", k: Gonum{}},
		{name: "go-6x16", k: newGoBlocked(6, 16, 24, 16, 48)},
		{name: "go-14x32", k: newGoBlocked(14, 32, 28, 8, 64)},
		// The blocks and packers of the AVX-512 kernel around the portable
		// micro-kernel: the AVX-512 driver is tested even where its
		// micro-kernel cannot run.
		{name: "go-14x32-avx512-blocks", k: withAsmPacking(newGoBlocked(14, 32, 168, 192, 3072))},
		{name: "go-6x16-avx2-blocks", k: withAsmPacking(newGoBlocked(6, 16, 120, 256, 3072))},
	}
	for _, c := range []struct {
		name string
		get  func() (*Blocked, error)
	}{{"avx2", AVX2}, {"avx512", AVX512}} {
		g, err := c.get()
		if err != nil {
			cases = append(cases, kernelCase{name: c.name, skip: err.Error()},
				kernelCase{name: c.name + "/small-blocks", skip: err.Error()})
			continue
		}
		cases = append(cases, kernelCase{name: c.name, k: g},
			kernelCase{name: c.name + "/small-blocks", k: withBlocks(g, 2*g.mr, 5, 3*g.nr)})
	}
	return cases
}

type gemmCase struct {
	tA, tB      bool
	m, n, k     int
	pad         int // extra elements per row of A, B and C
	alpha, beta float32
	nanC        bool // fill C with NaN (only meaningful with beta = 0)
}

func (c gemmCase) String() string {
	return fmt.Sprintf("tA=%v,tB=%v,m=%d,n=%d,k=%d,pad=%d,alpha=%g,beta=%g,nanC=%v", c.tA, c.tB, c.m, c.n, c.k, c.pad, c.alpha, c.beta, c.nanC)
}

// check runs one product on kern and compares it with the float64
// reference naive. The bound is the usual forward error of a float32 dot
// product: a few k·ε times Σ|alpha·a·b| + |beta·c|.
func check(t *testing.T, kern Kernel32, c gemmCase, rng *rand.Rand) {
	t.Helper()
	ar, ac := c.m, c.k
	if c.tA {
		ar, ac = c.k, c.m
	}
	br, bc := c.k, c.n
	if c.tB {
		br, bc = c.n, c.k
	}
	lda, ldb, ldc := max(1, ac)+c.pad, max(1, bc)+c.pad, max(1, c.n)+c.pad
	a := make([]float32, max(0, (ar-1)*lda+ac))
	b := make([]float32, max(0, (br-1)*ldb+bc))
	cc := make([]float32, max(0, (c.m-1)*ldc+c.n))
	for _, x := range [][]float32{a, b, cc} {
		for i := range x {
			x[i] = float32(rng.Float64()*2 - 1)
		}
	}
	if c.nanC {
		for i := range cc {
			cc[i] = float32(math.NaN())
		}
	}
	a64, b64, c64 := to64(a), to64(b), to64(cc)
	abs := func(x []float64) []float64 {
		y := make([]float64, len(x))
		for i, v := range x {
			y[i] = math.Abs(v)
		}
		return y
	}
	want := append([]float64(nil), c64...)
	if c.beta == 0 {
		for i := range want {
			want[i] = 0 // the reference must not read C either
		}
	}
	naive(c.tA, c.tB, c.m, c.n, c.k, float64(c.alpha), a64, lda, b64, ldb, float64(c.beta), want, ldc)
	bound := make([]float64, len(c64))
	if c.beta != 0 {
		copy(bound, abs(c64))
	}
	naive(c.tA, c.tB, c.m, c.n, c.k, math.Abs(float64(c.alpha)), abs(a64), lda, abs(b64), ldb, math.Abs(float64(c.beta)), bound, ldc)
	got := append([]float32(nil), cc...)
	kern.Sgemm(c.tA, c.tB, c.m, c.n, c.k, c.alpha, a, lda, b, ldb, c.beta, got, ldc)
	eps := float64(c.k+2) * 2 * math.Pow(2, -24)
	for i := 0; i < c.m; i++ {
		for j := 0; j < ldc && i*ldc+j < len(got); j++ {
			idx := i*ldc + j
			if j >= c.n { // padding between rows must be left alone
				if math.Float32bits(got[idx]) != math.Float32bits(cc[idx]) {
					t.Fatalf("%v: padding c[%d,%d] changed from %g to %g", c, i, j, cc[idx], got[idx])
				}
				continue
			}
			if d := math.Abs(float64(got[idx]) - want[idx]); !(d <= eps*bound[idx]+1e-30) {
				t.Fatalf("%v: c[%d,%d] = %g, want %g (|diff| %g > %g)", c, i, j, got[idx], want[idx], d, eps*bound[idx])
			}
		}
	}
}

func to64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

func TestKernelsMatchNaive(t *testing.T) {
	shapes := [][3]int{
		{1, 1, 1}, {1, 1, 0}, {0, 5, 3}, {4, 0, 2}, {2, 3, 1}, {1, 17, 5}, {17, 1, 5}, {5, 7, 2}, {6, 16, 4}, {6, 16, 3},
		{7, 17, 9}, {12, 32, 8}, {13, 33, 31}, {14, 32, 1}, {15, 33, 6}, {29, 65, 37}, {31, 15, 64},
		{48, 50, 17}, {3, 100, 40}, {100, 3, 40}, {70, 70, 70},
		{130, 140, 150}, // parallel, rows split
		{5, 700, 300},   // parallel, columns split
		{13, 40, 1200},  // parallel, few slivers either way
	}
	scalars := [][2]float32{{1, 0}, {1, 1}, {0.5, -1.5}, {-2, 0.25}, {0, 2}, {0, 0}}
	for _, kc := range kernelCases() {
		t.Run(kc.name, func(t *testing.T) {
			if kc.skip != "" {
				t.Skip(kc.skip)
			}
			rng := rand.New(rand.NewPCG(11, 12))
			for _, s := range shapes {
				if s[0]*s[1]*s[2] > 100_000 && !strings.HasSuffix(kc.name, "blocks") && kc.name != "avx2" && kc.name != "avx512" {
					continue // the large (parallel) shapes run on the production blocks only
				}
				if s[0]*s[1]*s[2] > 100_000 && strings.Contains(kc.name, "small-blocks") {
					continue
				}
				if s[0]*s[1]*s[2] > 100_000 && raceEnabled && strings.HasPrefix(kc.name, "go-") {
					continue // the portable micro-kernel is slow under the race detector; the assembly ones still run these shapes
				}
				for _, tA := range []bool{false, true} {
					for _, tB := range []bool{false, true} {
						for si, ab := range scalars {
							if s[0]*s[1]*s[2] > 100_000 && si%3 != 1 {
								continue // large shapes: two of the scalar pairs are enough
							}
							c := gemmCase{tA: tA, tB: tB, m: s[0], n: s[1], k: s[2], pad: si % 3 * 3, alpha: ab[0], beta: ab[1]}
							if kc.name == "gonum" && c.beta == 0 {
								c.nanC = false // gonum's Sgemm is not asked to ignore NaNs in C
							} else {
								c.nanC = c.beta == 0 && si%2 == 0
							}
							check(t, kc.k, c, rng)
						}
					}
				}
			}
		})
	}
}

// TestBetaZeroIgnoresNaN checks that beta = 0 overwrites C without reading
// it, on full tiles, edge tiles and several kc blocks.
func TestBetaZeroIgnoresNaN(t *testing.T) {
	for _, kc := range kernelCases() {
		t.Run(kc.name, func(t *testing.T) {
			if kc.skip != "" {
				t.Skip(kc.skip)
			}
			if kc.name == "gonum" {
				t.Skip("gonum's Sgemm scales C by beta, so 0·NaN stays NaN; only the blocked kernels promise to ignore C")
			}
			rng := rand.New(rand.NewPCG(3, 4))
			for _, s := range [][3]int{{1, 1, 1}, {6, 16, 7}, {37, 45, 300}, {130, 140, 150}} {
				check(t, kc.k, gemmCase{m: s[0], n: s[1], k: s[2], pad: 1, alpha: 1, beta: 0, nanC: true}, rng)
			}
		})
	}
}

// TestParallelNoLeak checks that every worker goroutine has ended when
// Sgemm returns.
func TestParallelNoLeak(t *testing.T) {
	g, err := AVX2()
	if err != nil {
		g = newGoBlocked(6, 16, 24, 16, 48)
	}
	before := runtime.NumGoroutine()
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 5; i++ {
		check(t, g, gemmCase{m: 130, n: 140, k: 150, alpha: 1, beta: 1}, rng)
		check(t, g, gemmCase{m: 5, n: 700, k: 300, alpha: 1, beta: 1}, rng)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after the products, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestNoAllocSteadyState(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector, which allocates for its own bookkeeping")
	}
	g, err := AVX2()
	if err != nil {
		t.Skip(err)
	}
	for _, s := range [][3]int{{64, 64, 64}, {200, 200, 200}, {5, 900, 600}} {
		m, n, k := s[0], s[1], s[2]
		a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
		allocs := testing.AllocsPerRun(20, func() {
			g.Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
		})
		if allocs > 0 {
			t.Errorf("%v: %v allocations per call", s, allocs)
		}
	}
}

func TestSgemmRejectsBadOperands(t *testing.T) {
	g := newGoBlocked(6, 16, 24, 16, 48)
	defer func() {
		if recover() == nil {
			t.Fatal("short C accepted")
		}
	}()
	g.Sgemm(false, false, 2, 2, 2, 1, make([]float32, 4), 2, make([]float32, 4), 2, 0, make([]float32, 3), 2)
}

func TestPartAndBalance(t *testing.T) {
	for _, tc := range []struct{ n, max, unit, want int }{
		{784, 256, 1, 196}, {512, 256, 1, 256}, {100, 120, 6, 102}, {1, 256, 16, 16}, {0, 8, 4, 4},
	} {
		if got := balance(tc.n, tc.max, tc.unit); got != tc.want {
			t.Errorf("balance(%d, %d, %d) = %d, want %d", tc.n, tc.max, tc.unit, got, tc.want)
		}
	}
	for _, n := range []int{0, 1, 5, 6, 7, 100, 512} {
		for nw := 1; nw <= 3; nw++ {
			next := 0
			for w := 0; w < nw; w++ {
				lo, hi := part(n, 6, w, nw)
				if lo != next || hi < lo || (hi != n && hi%6 != 0) {
					t.Fatalf("part(%d, 6, %d, %d) = [%d, %d), want to start at %d on a multiple of 6", n, w, nw, lo, hi, next)
				}
				next = hi
			}
			if next != n {
				t.Fatalf("part(%d, 6, ·, %d) covers [0, %d)", n, nw, next)
			}
		}
	}
}

// FuzzSgemm drives every kernel through random shapes, transposes,
// strides and scalars.
func FuzzSgemm(f *testing.F) {
	f.Add(uint8(1), uint8(1), uint8(1), false, false, uint8(0), uint8(0), uint64(1))
	f.Add(uint8(7), uint8(17), uint8(9), true, false, uint8(2), uint8(3), uint64(2))
	f.Add(uint8(33), uint8(65), uint8(200), false, true, uint8(1), uint8(2), uint64(3))
	f.Add(uint8(15), uint8(3), uint8(0), true, true, uint8(4), uint8(1), uint64(4))
	scalars := [][2]float32{{1, 0}, {1, 1}, {0.5, -1.5}, {-2, 0.25}, {0, 2}}
	kernels := kernelCases()
	f.Fuzz(func(t *testing.T, m, n, k uint8, tA, tB bool, pad, sc uint8, seed uint64) {
		ab := scalars[int(sc)%len(scalars)]
		c := gemmCase{tA: tA, tB: tB, m: int(m), n: int(n), k: int(k), pad: int(pad % 8), alpha: ab[0], beta: ab[1]}
		rng := rand.New(rand.NewPCG(seed, 7))
		for _, kc := range kernels {
			if kc.skip != "" {
				continue
			}
			check(t, kc.k, c, rng)
		}
	})
}

// TestConcurrentCallsDeterministic runs parallel products from several
// goroutines at once and checks that each equals, bit for bit, the same
// product on one thread: the split over workers never changes the order
// of the sums.
func TestConcurrentCallsDeterministic(t *testing.T) {
	g, err := AVX2()
	if err != nil {
		g = withAsmPacking(newGoBlocked(6, 16, 120, 256, 3072))
	}
	type problem struct {
		tA, tB  bool
		m, n, k int
		a, b, c []float32
	}
	rng := rand.New(rand.NewPCG(9, 10))
	var ps []problem
	for _, s := range [][3]int{{150, 130, 140}, {7, 800, 400}, {300, 40, 200}} {
		for _, tr := range [][2]bool{{false, false}, {true, true}} {
			p := problem{tA: tr[0], tB: tr[1], m: s[0], n: s[1], k: s[2]}
			p.a, p.b = make([]float32, p.m*p.k), make([]float32, p.k*p.n)
			for _, x := range [][]float32{p.a, p.b} {
				for i := range x {
					x[i] = float32(rng.Float64()*2 - 1)
				}
			}
			ps = append(ps, p)
		}
	}
	lds := func(p problem) (lda, ldb int) {
		lda, ldb = p.k, p.n
		if p.tA {
			lda = p.m
		}
		if p.tB {
			ldb = p.k
		}
		return lda, ldb
	}
	prev := runtime.GOMAXPROCS(1)
	for i := range ps {
		p := &ps[i]
		lda, ldb := lds(*p)
		p.c = make([]float32, p.m*p.n)
		g.Sgemm(p.tA, p.tB, p.m, p.n, p.k, 1.5, p.a, lda, p.b, ldb, 0, p.c, p.n)
	}
	runtime.GOMAXPROCS(max(2, prev))
	defer runtime.GOMAXPROCS(prev)
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		go func() {
			for r := 0; r < 2; r++ {
				for _, p := range ps {
					lda, ldb := lds(p)
					c := make([]float32, p.m*p.n)
					g.Sgemm(p.tA, p.tB, p.m, p.n, p.k, 1.5, p.a, lda, p.b, ldb, 0, c, p.n)
					for i := range c {
						if math.Float32bits(c[i]) != math.Float32bits(p.c[i]) {
							errs <- fmt.Errorf("%dx%dx%d tA=%v tB=%v: c[%d] = %g in parallel, %g on one thread", p.m, p.n, p.k, p.tA, p.tB, i, c[i], p.c[i])
							return
						}
					}
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < 4; w++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestSelfCheck(t *testing.T) {
	good := newGoBlocked(6, 16, 24, 16, 48)
	if err := selfCheck(good); err != nil {
		t.Fatalf("portable kernel: %v", err)
	}
	if g, err := AVX2(); err == nil {
		if err := selfCheck(g); err != nil {
			t.Fatalf("AVX2 kernel: %v", err)
		}
	}
	ref := microGo(6, 16)
	for name, micro := range map[string]microKernel{
		"wrong sum": func(kc int, a, b, c *float32, ldc int, alpha, beta float32) {
			ref(kc-1, a, b, c, ldc, alpha, beta) // drops the last step of p
		},
		"reads C when beta = 0": func(kc int, a, b, c *float32, ldc int, alpha, beta float32) {
			ref(kc, a, b, c, ldc, alpha, max(beta, 1e-30))
		},
	} {
		bad := &Blocked{name: name, mr: 6, nr: 16, micro: micro}
		if err := selfCheck(bad); err == nil {
			t.Errorf("%s: passed the self-check", name)
		}
	}
}

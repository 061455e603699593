package gemm

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// microKernel computes one mr×nr tile of C (row stride ldc):
//
//	C = alpha · Ã·B̃ + beta · C,
//
// where Ã is a packed sliver of A (kc columns of mr values, stored column
// after column) and B̃ a packed sliver of B (kc rows of nr values). When
// beta is 0 it must not read C.
type microKernel func(kc int, a, b, c *float32, ldc int, alpha, beta float32)

// Blocked is a Kernel32 in the Goto/BLIS scheme: a register-blocked
// micro-kernel wrapped in three levels of cache blocking.
//
// With op(A) of shape m×k and op(B) of shape k×n, the loops are
//
//	for jc := 0; jc < n; jc += nc        // B panel k×nc: L3
//	  for pc := 0; pc < k; pc += kc      // pack B̃ = op(B)[pc:pc+kc, jc:jc+nc]
//	    for ic := 0; ic < m; ic += mc    // pack Ã = op(A)[ic:ic+mc, pc:pc+kc]: L2
//	      for jr := 0; jr < nc; jr += nr // one kc×nr sliver of B̃: L1
//	        for ir := 0; ir < mc; ir += mr
//	          C[ic+ir:+mr, jc+jr:+nr] = alpha·Ã[ir]·B̃[jr] + beta'·C[...]
//
// where beta' is beta for the first kc block and 1 for the later ones, so
// C is read and written once per kc block and beta = 0 never reads C.
// Packing copies op(A) into mr-row slivers (column after column) and op(B)
// into nr-column slivers (row after row): both transposes are absorbed by
// the packing, which reads either rows or columns of the stored matrix, and
// the micro-kernel always streams both slivers with unit stride. Tiles on the
// right and bottom edges are computed into a small buffer with zero-padded
// slivers and only the valid part is merged into C. The block sizes are
// balanced so that, e.g., k = 784 gives four kc blocks of 196 rather than
// three of 256 and one of 16.
//
// Parallelism: with P = runtime.GOMAXPROCS(0) workers, the workers pack
// each shared B̃ panel together, meet at a barrier, then take chunks of rows
// of C (about m/8P, whole mr slivers) from a shared counter, and for each
// pack its own Ã and run the macro kernel; the B̃ buffers are doubled, so
// one barrier per kc block suffices, and a worker delayed by the OS does not
// hold up the rows the others can take. When m is too small to split, the columns are split instead and
// each worker packs its own B̃. Products below about 2·128³ flops stay on the
// calling goroutine. Packing buffers are kept on a free list that the
// garbage collector does not empty (unlike a sync.Pool), so the steady
// state does not allocate. A product gives the same bits whatever the number of workers:
// each element of C is summed in the same order.
//
// A Blocked comes from AVX2 or AVX512; its zero value is not usable. It is
// safe for concurrent use.
type Blocked struct {
	name       string
	mr, nr     int
	mc, kc, nc int
	micro      microKernel
	// transpose8 and transpose6, when set, pack 8 or 6 rows of a stored
	// matrix into an interleaved sliver (see transposePack8); they serve
	// op(A) = A and op(B) = Bᵀ, whose slivers gather columns of rows.
	transpose8, transpose6 transposer
	// copyA and copyB, when set, copy a whole sliver from mr (nr)
	// neighbouring columns of a stored matrix: op(A) = Aᵀ and op(B) = B.
	copyA, copyB rowCopier
	jobs         jobList
}

// rowCopier sets dst[p·w+j] = src[p·ld+j] for j < w and p < n, w being the
// tile's mr or nr.
type rowCopier func(dst, src *float32, ld, n int)

// transposer sets dst[p·stride+i] = src[i·ld+p] for i < 8 (or 6) and p < n,
// n a multiple of 8, and may write 2 floats past the last column.
type transposer func(dst *float32, stride int, src *float32, ld, n int)

// packSlack is the number of floats past the end of a packing buffer that
// a transposer may write.
const packSlack = 16

// transposeRows sets d[p·stride+i] = src[i·ld+p] for i < rows and p < kb
// with the transposers when rows is a whole number of groups of 8 (plus one
// of 6), and reports whether it could.
func (g *Blocked) transposeRows(d, src []float32, ld, rows, stride, kb int) bool {
	kb8 := kb &^ 7
	if g.transpose8 == nil || kb8 == 0 || (rows%8 != 0 && (rows%8 != 6 || g.transpose6 == nil)) {
		return false
	}
	// The transposers write within d and its slack, and read within src:
	// checked by length, not by reading d's last element, which may lie in
	// the next sliver that another goroutine is packing.
	if len(d) < kb*stride+2 || len(src) < (rows-1)*ld+kb {
		return false
	}
	if rows%8 == 6 {
		// The group of 6 spills into the next column's first two floats,
		// so it goes first and the groups of 8 overwrite the spill.
		g.transpose6(&d[rows-6], stride, &src[(rows-6)*ld], ld, kb8)
	}
	for i := 0; i+8 <= rows; i += 8 {
		g.transpose8(&d[i], stride, &src[i*ld], ld, kb8)
	}
	for i := 0; i < rows; i++ {
		row := src[i*ld : i*ld+kb]
		for p := kb8; p < kb; p++ {
			d[p*stride+i] = row[p]
		}
	}
	return true
}

// String returns the name of the micro-kernel.
func (g *Blocked) String() string { return g.name }

// Tile returns the register tile mr×nr of the micro-kernel.
func (g *Blocked) Tile() (mr, nr int) { return g.mr, g.nr }

// Blocks returns the cache block sizes mc, kc and nc.
func (g *Blocked) Blocks() (mc, kc, nc int) { return g.mc, g.kc, g.nc }

// parallelFlops is the size m·n·k below which a product runs on one
// goroutine: starting and joining workers costs a few microseconds.
const parallelFlops = 128 * 128 * 128

// Sgemm implements Kernel32. It panics if the arguments do not describe
// valid operands (see Check), since the micro-kernel writes through raw
// pointers.
func (g *Blocked) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	g.product(operands{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta,
		a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc}, false)
}

// SgemmSerial implements SerialKernel32: Sgemm on the calling goroutine
// alone, with the same bits (the split over workers never changes the
// order of the sums).
func (g *Blocked) SgemmSerial(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	g.product(operands{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta,
		a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc}, true)
}

// product checks the operands o (panicking if they are invalid), settles
// the empty products and runs the rest.
func (g *Blocked) product(o operands, serial bool) {
	if err := Check(o.transA, o.transB, o.m, o.n, o.k, len(o.a), o.lda, len(o.b), o.ldb, len(o.c), o.ldc); err != nil {
		panic(fmt.Sprintf("gemm: %s: %v", g.name, err))
	}
	if o.m == 0 || o.n == 0 {
		return
	}
	if o.k == 0 || o.alpha == 0 {
		if o.bias != nil {
			setRows(o.m, o.n, o.bias, o.c, o.ldc)
		} else {
			scale(o.m, o.n, o.beta, o.c, o.ldc)
		}
		return
	}
	g.sgemm(o, serial)
}

// SgemmBias implements BiasKernel32: with the first block of the inner
// dimension, each tile of C is set to its columns of bias and the
// micro-kernel adds the product to it with beta = 1, the arithmetic of
// Sgemm after a copy of bias into every row of C. It panics on invalid
// operands, as Sgemm does, and when bias is shorter than n.
func (g *Blocked) SgemmBias(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, bias []float32, c []float32, ldc int) {
	if len(bias) < n {
		panic(fmt.Sprintf("gemm: %s: bias has %d elements, want at least %d", g.name, len(bias), n))
	}
	g.product(operands{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: 1,
		a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, bias: bias}, false)
}

// sgemm runs the product o of valid operands, on several workers when it
// is large enough and not serial.
func (g *Blocked) sgemm(o operands, serial bool) {
	m, n, k := o.m, o.n, o.k
	j := g.jobs.get()
	if j == nil {
		j = &job{g: g}
		j.bar.cond.L = &j.bar.mu
	}
	j.op = o

	nw, splitN := 1, false
	if p := runtime.GOMAXPROCS(0); !serial && p > 1 && m*n*k >= parallelFlops {
		ms, ns := ceilDiv(m, g.mr), ceilDiv(n, g.nr)
		switch {
		case ms >= 4*p:
			nw = p
		case ns >= 4*p:
			nw, splitN = p, true
		case ms >= ns:
			nw = min(p, ms)
		default:
			nw, splitN = min(p, ns), true
		}
	}
	j.prepare(nw, splitN)
	if nw > 1 {
		j.wg.Add(nw - 1)
		for w := 1; w < nw; w++ {
			go sgemmWorker()
			handoff <- &j.tasks[w]
		}
	}
	j.run(0)
	if nw > 1 {
		j.wg.Wait()
	}
	j.op = operands{} // do not retain the caller's slices
	g.jobs.put(j)
}

// jobList is a free list of jobs with their buffers: at most one job per
// concurrent Sgemm call ever exists, and they live as long as the kernel.
type jobList struct {
	mu   sync.Mutex
	free []*job
}

// get takes a job off the list, or returns nil if it is empty.
func (l *jobList) get() *job {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.free)
	if n == 0 {
		return nil
	}
	j := l.free[n-1]
	l.free[n-1] = nil
	l.free = l.free[:n-1]
	return j
}

// put returns a job to the list.
func (l *jobList) put(j *job) {
	l.mu.Lock()
	l.free = append(l.free, j)
	l.mu.Unlock()
}

// handoff passes a task to a freshly started worker goroutine; passing it
// through a channel rather than a closure keeps the call allocation-free.
var handoff = make(chan *task, 64)

func sgemmWorker() {
	t := <-handoff
	t.j.run(t.w)
	t.j.wg.Done()
}

type operands struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a              []float32
	lda            int
	b              []float32
	ldb            int
	c              []float32
	ldc            int
	// bias, when not nil, is the row every row of C starts from (beta
	// is then 1; see SgemmBias).
	bias []float32
}

// job is one Sgemm call split over nw workers, with its reusable buffers.
type job struct {
	g      *Blocked
	op     operands
	nw     int
	splitN bool
	bpack  [2][]float32 // shared B̃ when the rows are split, double-buffered
	ws     []workspace
	tasks  []task
	bar    barrier
	wg     sync.WaitGroup
	// rowNext[s%2] hands out the row chunks of block s when the rows are
	// split: the first row not yet taken.
	rowNext [2]atomic.Int64
}

type task struct {
	j *job
	w int
}

// workspace is one worker's packing buffers.
type workspace struct {
	apack, bpack, tile []float32
}

func (j *job) prepare(nw int, splitN bool) {
	g, o := j.g, &j.op
	j.nw, j.splitN = nw, splitN
	j.bar.n = nw
	for len(j.ws) < nw {
		j.ws = append(j.ws, workspace{})
	}
	for len(j.tasks) < nw {
		j.tasks = append(j.tasks, task{j: j, w: len(j.tasks)})
	}
	kb := balance(o.k, g.kc, 1)
	rows, cols := o.m, o.n
	if splitN {
		cols = ceilDiv(ceilDiv(o.n, g.nr), nw) * g.nr
	}
	// balance(n, max, unit) never exceeds roundUp(min(n, max), unit).
	asize := roundUp(min(rows, g.mc), g.mr) * kb
	bsize := roundUp(min(cols, g.nc), g.nr) * kb
	if !splitN {
		j.bpack[0] = grow(j.bpack[0], bsize+packSlack)
		if nw > 1 {
			j.bpack[1] = grow(j.bpack[1], bsize+packSlack)
		}
	}
	for w := 0; w < nw; w++ {
		ws := &j.ws[w]
		ws.apack = grow(ws.apack, asize+packSlack)
		ws.tile = grow(ws.tile, g.mr*g.nr)
		if splitN {
			ws.bpack = grow(ws.bpack, bsize+packSlack)
		}
	}
}

// run is worker w's share of the loops described on Blocked.
func (j *job) run(w int) {
	g, o, ws := j.g, &j.op, &j.ws[w]
	mr, nr := g.mr, g.nr
	c0, c1 := 0, o.n
	bpack, step := j.bpack[0], 0
	if j.splitN {
		c0, c1 = part(o.n, nr, w, j.nw)
		bpack = ws.bpack
	}
	kcb := balance(o.k, g.kc, 1)
	ncb := roundUp(balance(c1-c0, g.nc, nr), nr)
	mcb := roundUp(balance(o.m, g.mc, mr), mr)
	// sharedRows: the workers take chunks of rows in turn, a few per
	// worker, so that one that the OS delays does not hold up the others.
	sharedRows := !j.splitN && j.nw > 1
	if sharedRows {
		mcb = min(mcb, roundUp(ceilDiv(o.m, rowChunksPerWorker*j.nw), mr))
	}
	for jc := c0; jc < c1; jc += ncb {
		nb := min(ncb, c1-jc)
		for pc := 0; pc < o.k; pc += kcb {
			kb := min(kcb, o.k-pc)
			beta := o.beta
			if pc > 0 {
				beta = 1
			}
			// The tiles of C take the bias with the first block of k.
			bias := o.bias
			if pc > 0 {
				bias = nil
			}
			slivers := ceilDiv(nb, nr)
			if j.splitN || j.nw == 1 {
				g.packB(o, bpack, jc, pc, nb, kb, nr, 0, slivers)
			} else {
				// Two buffers take turns: when the barrier after packing
				// B̃ into one opens, every worker has finished with the
				// B̃ packed before it into the other, so one barrier per
				// block suffices.
				// The row counter of the block takes turns the same way;
				// the last worker at the barrier rewinds it.
				bpack = j.bpack[step%2]
				next := &j.rowNext[step%2]
				step++
				t0, t1 := part(slivers, 1, w, j.nw)
				g.packB(o, bpack, jc, pc, nb, kb, nr, t0, t1)
				j.bar.wait(next)
				for {
					ic := int(next.Add(int64(mcb))) - mcb
					if ic >= o.m {
						break
					}
					mb := min(mcb, o.m-ic)
					g.packA(o, ws.apack, ic, pc, mb, kb, mr)
					g.macro(o, ws.apack, bpack, ws.tile, ic, jc, mb, nb, kb, beta, bias)
				}
				continue
			}
			for ic := 0; ic < o.m; ic += mcb {
				mb := min(mcb, o.m-ic)
				g.packA(o, ws.apack, ic, pc, mb, kb, mr)
				g.macro(o, ws.apack, bpack, ws.tile, ic, jc, mb, nb, kb, beta, bias)
			}
		}
	}
}

// macro multiplies the packed blocks Ã (mb×kb) and B̃ (kb×nb) into
// C[ic:ic+mb, jc:jc+nb], one mr×nr tile at a time. With bias (then beta is
// 1), each tile of C is first set to its columns of bias.
func (g *Blocked) macro(o *operands, apack, bpack, tile []float32, ic, jc, mb, nb, kb int, beta float32, bias []float32) {
	mr, nr := g.mr, g.nr
	for jr := 0; jr < nb; jr += nr {
		nrr := min(nr, nb-jr)
		bp := &bpack[jr*kb]
		for ir := 0; ir < mb; ir += mr {
			mrr := min(mr, mb-ir)
			ap := &apack[ir*kb]
			ci := (ic+ir)*o.ldc + jc + jr
			if bias != nil {
				brow := bias[jc+jr : jc+jr+nrr]
				for ii := 0; ii < mrr; ii++ {
					copy(o.c[ci+ii*o.ldc:ci+ii*o.ldc+nrr], brow)
				}
			}
			if mrr == mr && nrr == nr {
				g.micro(kb, ap, bp, &o.c[ci], o.ldc, o.alpha, beta)
				continue
			}
			g.micro(kb, ap, bp, &tile[0], nr, o.alpha, 0)
			for ii := 0; ii < mrr; ii++ {
				crow := o.c[ci+ii*o.ldc : ci+ii*o.ldc+nrr]
				trow := tile[ii*nr : ii*nr+nrr]
				if beta == 0 {
					copy(crow, trow)
					continue
				}
				for jj, t := range trow {
					crow[jj] = t + beta*crow[jj]
				}
			}
		}
	}
}

// packA copies op(A)[ic:ic+mb, pc:pc+kb] into mr-row slivers: element
// (ir+i, p) goes to dst[ir·kb + p·mr + i], rows past mb are zero.
func (g *Blocked) packA(o *operands, dst []float32, ic, pc, mb, kb, mr int) {
	a, lda := o.a, o.lda
	for ir := 0; ir < mb; ir += mr {
		d := dst[ir*kb : ir*kb+mr*kb]
		rows := min(mr, mb-ir)
		i0 := ic + ir
		if !o.transA && rows == mr && g.transposeRows(dst[ir*kb:], a[i0*lda+pc:], lda, mr, mr, kb) {
			continue
		}
		if o.transA && rows == mr && g.copyA != nil {
			src := a[pc*lda+i0 : (pc+kb-1)*lda+i0+mr]
			_ = d[kb*mr-1]
			g.copyA(&d[0], &src[0], lda, kb)
			continue
		}
		switch {
		case !o.transA && rows == 6 && mr == 6:
			// op(A)(i, p) = a[i·lda + p]: six rows read side by side.
			base := i0*lda + pc
			r0 := a[base : base+kb]
			r1 := a[base+lda : base+lda+kb]
			r2 := a[base+2*lda : base+2*lda+kb]
			r3 := a[base+3*lda : base+3*lda+kb]
			r4 := a[base+4*lda : base+4*lda+kb]
			r5 := a[base+5*lda : base+5*lda+kb]
			for p := range r0 {
				s := d[p*6 : p*6+6 : p*6+6]
				s[0], s[1], s[2], s[3], s[4], s[5] = r0[p], r1[p], r2[p], r3[p], r4[p], r5[p]
			}
			continue
		case !o.transA:
			for i := 0; i < rows; i++ {
				src := a[(i0+i)*lda+pc : (i0+i)*lda+pc+kb]
				for p, v := range src {
					d[p*mr+i] = v
				}
			}
		case rows == 6 && mr == 6:
			// op(A)(i, p) = a[p·lda + i]: a row of the stored A is a column of op(A).
			for p := 0; p < kb; p++ {
				*(*[6]float32)(d[p*6:]) = *(*[6]float32)(a[(pc+p)*lda+i0:])
			}
			continue
		default:
			for p := 0; p < kb; p++ {
				src := a[(pc+p)*lda+i0 : (pc+p)*lda+i0+rows]
				copy(d[p*mr:p*mr+rows], src)
			}
		}
		if rows < mr {
			for p := 0; p < kb; p++ {
				clear(d[p*mr+rows : p*mr+mr])
			}
		}
	}
}

// packB copies the slivers t0..t1-1 of op(B)[pc:pc+kb, jc:jc+nb] into
// nr-column slivers: element (p, t·nr+j) goes to dst[t·nr·kb + p·nr + j],
// columns past nb are zero.
func (g *Blocked) packB(o *operands, dst []float32, jc, pc, nb, kb, nr, t0, t1 int) {
	b, ldb := o.b, o.ldb
	for t := t0; t < t1; t++ {
		d := dst[t*nr*kb : (t+1)*nr*kb]
		j0 := jc + t*nr
		cols := min(nr, nb-t*nr)
		if o.transB && cols == nr && nr%8 == 0 && g.transposeRows(dst[t*nr*kb:], b[j0*ldb+pc:], ldb, nr, nr, kb) {
			continue
		}
		if !o.transB && cols == nr && g.copyB != nil {
			src := b[pc*ldb+j0 : (pc+kb-1)*ldb+j0+nr]
			_ = d[kb*nr-1]
			g.copyB(&d[0], &src[0], ldb, kb)
			continue
		}
		switch {
		case !o.transB && cols == 16 && nr == 16:
			// op(B)(p, j) = b[p·ldb + j]: whole rows of 16.
			for p := 0; p < kb; p++ {
				src := b[(pc+p)*ldb+j0:]
				*(*[16]float32)(d[p*16:]) = *(*[16]float32)(src)
			}
			continue
		case !o.transB:
			for p := 0; p < kb; p++ {
				src := b[(pc+p)*ldb+j0 : (pc+p)*ldb+j0+cols]
				copy(d[p*nr:p*nr+cols], src)
			}
		default:
			// op(B)(p, j) = b[j·ldb + p]: a row of the stored B is a column of op(B).
			// Four rows of B are read side by side, so that each store
			// fills four neighbouring values of a row of the sliver.
			j := 0
			for ; j+4 <= cols; j += 4 {
				base := (j0+j)*ldb + pc
				r0 := b[base : base+kb]
				r1 := b[base+ldb : base+ldb+kb]
				r2 := b[base+2*ldb : base+2*ldb+kb]
				r3 := b[base+3*ldb : base+3*ldb+kb]
				for p := range r0 {
					s := d[p*nr+j : p*nr+j+4 : p*nr+j+4]
					s[0], s[1], s[2], s[3] = r0[p], r1[p], r2[p], r3[p]
				}
			}
			for ; j < cols; j++ {
				src := b[(j0+j)*ldb+pc : (j0+j)*ldb+pc+kb]
				for p, v := range src {
					d[p*nr+j] = v
				}
			}
		}
		if cols < nr {
			for p := 0; p < kb; p++ {
				clear(d[p*nr+cols : p*nr+nr])
			}
		}
	}
}

// barrier makes n workers wait for each other. A waiter first spins
// briefly, yielding the processor, since the other workers usually
// arrive within microseconds; then it sleeps on a condition variable.
type barrier struct {
	mu    sync.Mutex
	cond  sync.Cond
	n     int
	count int
	gen   atomic.Uint64
}

// barrierSpins is how many times a waiter yields before it sleeps.
const barrierSpins = 100

// wait blocks until all n workers have called it; the last one to arrive
// sets *rewind to 0 before any is released.
func (b *barrier) wait(rewind *atomic.Int64) {
	b.mu.Lock()
	gen := b.gen.Load()
	b.count++
	if b.count == b.n {
		rewind.Store(0)
		b.count = 0
		b.gen.Store(gen + 1)
		b.cond.Broadcast()
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	for i := 0; i < barrierSpins; i++ {
		if b.gen.Load() != gen {
			return
		}
		runtime.Gosched()
	}
	b.mu.Lock()
	for b.gen.Load() == gen {
		b.cond.Wait()
	}
	b.mu.Unlock()
}

// part returns worker w's share [lo, hi) of n items split in whole units.
func part(n, unit, w, nw int) (lo, hi int) {
	units := ceilDiv(n, unit)
	lo = min(n, w*units/nw*unit)
	hi = min(n, (w+1)*units/nw*unit)
	return lo, hi
}

// balance returns the block size, at most about max and a multiple of unit,
// that splits n into the fewest blocks of nearly equal size.
func balance(n, max, unit int) int {
	if n <= 0 {
		return unit
	}
	blocks := ceilDiv(n, max)
	return roundUp(ceilDiv(n, blocks), unit)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func roundUp(a, b int) int { return ceilDiv(a, b) * b }

// grow returns a 64-byte aligned buffer of at least n elements, reusing buf
// when it is large enough.
func grow(buf []float32, n int) []float32 {
	if cap(buf) >= n {
		return buf[:n]
	}
	raw := make([]float32, n+16)
	off := int((64 - uintptr(unsafe.Pointer(&raw[0]))%64) % 64 / 4)
	return raw[off : off+n : off+n]
}

// microGo is the portable micro-kernel, the reference for the assembly
// ones; it lets the blocked driver run (and be tested) on any CPU.
func microGo(mr, nr int) microKernel {
	return func(kc int, a, b, c *float32, ldc int, alpha, beta float32) {
		as := unsafe.Slice(a, kc*mr)
		bs := unsafe.Slice(b, kc*nr)
		cs := unsafe.Slice(c, (mr-1)*ldc+nr)
		var buf [16 * 64]float32
		acc := buf[:mr*nr]
		for p := 0; p < kc; p++ {
			ap, bp := as[p*mr:p*mr+mr], bs[p*nr:p*nr+nr]
			for i, x := range ap {
				row := acc[i*nr : i*nr+nr]
				for j, y := range bp {
					row[j] += x * y
				}
			}
		}
		for i := 0; i < mr; i++ {
			for j := 0; j < nr; j++ {
				v := alpha * acc[i*nr+j]
				if beta != 0 {
					v += beta * cs[i*ldc+j]
				}
				cs[i*ldc+j] = v
			}
		}
	}
}

// rowChunksPerWorker is about how many chunks of rows each worker takes
// per kc block when the rows are shared.
const rowChunksPerWorker = 8

// selfCheck runs g's micro-kernel once against the portable one on a small
// deterministic tile (an odd kc, a padded C, beta ≠ 0 and beta = 0 over a
// NaN), and returns an error if they disagree. A kernel selected from the
// CPU's features goes through it before first use.
func selfCheck(g *Blocked) error {
	const kc = 37
	mr, nr, ldc := g.mr, g.nr, g.nr+3
	a, b := make([]float32, mr*kc), make([]float32, nr*kc)
	for i := range a {
		a[i] = float32(i%7) - 3
	}
	for i := range b {
		b[i] = float32(i%5)*0.5 - 1
	}
	ref := microGo(mr, nr)
	for _, beta := range []float32{0.5, 0} {
		init := make([]float32, mr*ldc)
		for i := range init {
			init[i] = float32(i%3) - 1
			if beta == 0 {
				init[i] = float32(math.NaN())
			}
		}
		got, want := append([]float32(nil), init...), append([]float32(nil), init...)
		g.micro(kc, &a[0], &b[0], &got[0], ldc, 1.5, beta)
		ref(kc, &a[0], &b[0], &want[0], ldc, 1.5, beta)
		for i := 0; i < mr; i++ {
			for j := 0; j < ldc; j++ {
				x, y := got[i*ldc+j], want[i*ldc+j]
				if j >= nr {
					if math.Float32bits(x) != math.Float32bits(init[i*ldc+j]) {
						return fmt.Errorf("%s: wrote C[%d,%d] outside its %d×%d tile", g.name, i, j, mr, nr)
					}
					continue
				}
				if !(math.Abs(float64(x-y)) <= 1e-3*(1+math.Abs(float64(y)))) {
					return fmt.Errorf("%s: C[%d,%d] = %g, want %g (beta %g)", g.name, i, j, x, y, beta)
				}
			}
		}
	}
	return nil
}

package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// spec describes one register-blocked micro-kernel.
type spec struct {
	name   string
	mr     int  // rows of the tile (values of A broadcast per step)
	nv     int  // vectors per row of the tile
	w      int  // float32 lanes per vector
	zmm    bool // AVX-512 (32 ZMM registers, embedded broadcasts)
	unroll int  // steps of p per loop iteration
}

func (s spec) nr() int { return s.nv * s.w }

func (s spec) vec(i int) VecPhysical {
	if s.zmm {
		return []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15,
			Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31}[i]
	}
	return []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y12, Y13, Y14, Y15}[i]
}

func main() {
	ConstraintExpr("!purego")
	for _, s := range []spec{
		{name: "sgemmKernel6x16AVX2", mr: 6, nv: 2, w: 8, unroll: 4},
		{name: "sgemmKernel14x32AVX512", mr: 14, nv: 2, w: 16, zmm: true, unroll: 4},
	} {
		kernel(s)
	}
	transposePack(6)
	transposePack(8)
	for _, w := range []int{6, 14, 16, 32} {
		copyRows(w)
	}
	Generate()
}

func kernel(s spec) {
	TEXT(s.name, NOSPLIT, "func(kc int, a, b, c *float32, ldc int, alpha, beta float32)")
	isa := "AVX2 and FMA"
	if s.zmm {
		isa = "AVX-512F"
	}
	Doc(fmt.Sprintf("%s computes the %d×%d tile C = alpha·A·B + beta·C from a packed", s.name, s.mr, s.nr()),
		fmt.Sprintf("sliver a (kc×%d, column-major) and a packed sliver b (kc×%d, row-major);", s.mr, s.nr()),
		fmt.Sprintf("ldc is the row stride of C in elements. It needs %s.", isa))
	Pragma("noescape")

	nregs := 16
	if s.zmm {
		nregs = 32
	}
	acc := func(i, v int) VecPhysical { return s.vec(i*s.nv + v) }
	nacc := s.mr * s.nv
	bv := make([]VecPhysical, s.nv)
	for v := range bv {
		bv[v] = s.vec(nacc + v)
	}
	// Registers after the accumulators and the B vectors: broadcasts of A
	// in the k loop, alpha and beta after it.
	spare := []VecPhysical{}
	for i := nacc + s.nv; i < nregs; i++ {
		spare = append(spare, s.vec(i))
	}
	if len(spare) < 2 {
		panic(s.name + ": not enough vector registers")
	}

	kc := Load(Param("kc"), GP64())
	pa := Load(Param("a"), GP64())
	pb := Load(Param("b"), GP64())
	pc := Load(Param("c"), GP64())
	ldc := Load(Param("ldc"), GP64())
	SHLQ(U8(2), ldc) // bytes per row of C

	Comment("Prefetch the tile of C while the k loop runs.")
	row := GP64()
	MOVQ(pc, row)
	for i := 0; i < s.mr; i++ {
		PREFETCHT0(Mem{Base: row})
		PREFETCHT0(Mem{Base: row, Disp: 4*s.nr() - 4})
		if i+1 < s.mr {
			ADDQ(ldc, row)
		}
	}

	Comment("Zero the accumulators.")
	for i := 0; i < nacc; i++ {
		r := s.vec(i)
		if s.zmm {
			VPXORD(r, r, r) // VXORPS on ZMM would need AVX512DQ
		} else {
			VXORPS(r, r, r)
		}
	}

	step := func(p int) {
		for v := 0; v < s.nv; v++ {
			VMOVUPS(Mem{Base: pb, Disp: 4 * (p*s.nr() + v*s.w)}, bv[v])
		}
		for i := 0; i < s.mr; i++ {
			ai := Mem{Base: pa, Disp: 4 * (p*s.mr + i)}
			// One broadcast feeds the nv FMAs of the row (an embedded
			// broadcast per FMA would cost nv loads instead of one).
			t := spare[i%2]
			VBROADCASTSS(ai, t)
			for v := 0; v < s.nv; v++ {
				VFMADD231PS(bv[v], t, acc(i, v))
			}
		}
	}

	n := GP64()
	MOVQ(kc, n)
	SHRQ(U8(bitsOf(s.unroll)), n)
	JZ(LabelRef(s.name + "_tail"))
	Label(s.name + "_loop")
	for p := 0; p < s.unroll; p++ {
		step(p)
	}
	ADDQ(U32(4*s.unroll*s.mr), pa)
	ADDQ(U32(4*s.unroll*s.nr()), pb)
	DECQ(n)
	JNZ(LabelRef(s.name + "_loop"))

	Label(s.name + "_tail")
	ANDQ(U32(s.unroll-1), kc)
	JZ(LabelRef(s.name + "_epilogue"))
	Label(s.name + "_tailloop")
	step(0)
	ADDQ(U32(4*s.mr), pa)
	ADDQ(U32(4*s.nr()), pb)
	DECQ(kc)
	JNZ(LabelRef(s.name + "_tailloop"))

	Label(s.name + "_epilogue")
	alpha, beta := spare[len(spare)-2], spare[len(spare)-1]
	VBROADCASTSS(paramAddr("alpha"), alpha)
	for i := 0; i < nacc; i++ {
		VMULPS(alpha, s.vec(i), s.vec(i))
	}
	bits := GP32()
	MOVL(paramAddr("beta"), bits)
	ANDL(U32(0x7fffffff), bits)
	JZ(LabelRef(s.name + "_store"))

	Comment("beta ≠ 0: C = alpha·AB + beta·C.")
	VBROADCASTSS(paramAddr("beta"), beta)
	for i := 0; i < s.mr; i++ {
		for v := 0; v < s.nv; v++ {
			m := Mem{Base: pc, Disp: 4 * v * s.w}
			VFMADD231PS(m, beta, acc(i, v))
			VMOVUPS(acc(i, v), m)
		}
		if i+1 < s.mr {
			ADDQ(ldc, pc)
		}
	}
	VZEROUPPER()
	RET()

	Comment("beta = 0: C = alpha·AB, C is not read.")
	Label(s.name + "_store")
	for i := 0; i < s.mr; i++ {
		for v := 0; v < s.nv; v++ {
			VMOVUPS(acc(i, v), Mem{Base: pc, Disp: 4 * v * s.w})
		}
		if i+1 < s.mr {
			ADDQ(ldc, pc)
		}
	}
	VZEROUPPER()
	RET()
}

func bitsOf(unroll int) uint8 {
	b := uint8(0)
	for 1<<b < unroll {
		b++
	}
	if 1<<b != unroll {
		panic("unroll must be a power of two")
	}
	return b
}

// paramAddr is the stack address of a scalar argument.
func paramAddr(name string) Mem {
	b, err := Param(name).Resolve()
	if err != nil {
		panic(err)
	}
	return b.Addr
}

// transposePack writes the function transposePack<rows>, the packing of
// rows stored rows into an interleaved sliver:
//
//	dst[p·stride + i] = src[i·ld + p],  i < rows, p < n (n a multiple of 8).
//
// Each step loads an 8×8 block (rows past rows read as zero), transposes it
// in registers with unpack, shuffle and 128-bit permute, and stores eight
// columns of 8 floats. With rows = 6 each store spills two floats past the
// column; the next column overwrites them, and the last spill lands in the
// two floats after dst[(n-1)·stride + 5], which the caller must own.
func transposePack(rows int) {
	name := fmt.Sprintf("transposePack%d", rows)
	TEXT(name, NOSPLIT, "func(dst *float32, stride int, src *float32, ld, n int)")
	Doc(fmt.Sprintf("%s sets dst[p·stride+i] = src[i·ld+p] for i < %d and p < n, n a multiple", name, rows),
		"of 8, with 8×8 AVX transposes; it writes up to 8 floats per column. It needs AVX.")
	Pragma("noescape")
	dst := Load(Param("dst"), GP64())
	stride := Load(Param("stride"), GP64())
	src := Load(Param("src"), GP64())
	ld := Load(Param("ld"), GP64())
	n := Load(Param("n"), GP64())
	SHLQ(U8(2), stride)
	SHLQ(U8(2), ld)
	SHRQ(U8(3), n)
	JZ(LabelRef(name + "_done"))
	src3 := GP64()
	LEAQ(Mem{Base: src, Index: ld, Scale: 2}, src3)
	ADDQ(ld, src3)
	src6 := GP64()
	LEAQ(Mem{Base: src3, Index: ld, Scale: 2}, src6)
	ADDQ(ld, src6)
	stride3 := GP64()
	LEAQ(Mem{Base: stride, Index: stride, Scale: 2}, stride3)

	r := []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7}
	t := []VecPhysical{Y8, Y9, Y10, Y11, Y12, Y13, Y14, Y15}
	if rows < 8 {
		for i := rows; i < 8; i++ {
			VXORPS(r[i], r[i], r[i])
		}
	}
	Label(name + "_loop")
	rowAddr := []Mem{
		{Base: src}, {Base: src, Index: ld, Scale: 1}, {Base: src, Index: ld, Scale: 2},
		{Base: src3}, {Base: src3, Index: ld, Scale: 1}, {Base: src3, Index: ld, Scale: 2},
		{Base: src6}, {Base: src6, Index: ld, Scale: 1},
	}
	for i := 0; i < rows; i++ {
		VMOVUPS(rowAddr[i], r[i])
	}
	// Row i holds x_i0 … x_i7. Pairs of rows interleave:
	// t0 = x00 x10 x01 x11 | x04 x14 x05 x15, t1 = x02 x12 x03 x13 | x06 x16 x07 x17, …
	for q := 0; q < 4; q++ {
		VUNPCKLPS(r[2*q+1], r[2*q], t[2*q])
		VUNPCKHPS(r[2*q+1], r[2*q], t[2*q+1])
	}
	// Quadruples: s0 = x00 x10 x20 x30 | x04 …, s1 = x01 x11 x21 x31 | x05 …
	for h := 0; h < 2; h++ { // rows 0–3, rows 4–7
		a, b := t[4*h], t[4*h+2]   // unpack-low of the two pairs
		c, d := t[4*h+1], t[4*h+3] // unpack-high of the two pairs
		VSHUFPS(U8(0x44), b, a, r[4*h+0])
		VSHUFPS(U8(0xEE), b, a, r[4*h+1])
		VSHUFPS(U8(0x44), d, c, r[4*h+2])
		VSHUFPS(U8(0xEE), d, c, r[4*h+3])
	}
	// Columns: low halves give columns 0–3, high halves columns 4–7.
	for q := 0; q < 4; q++ {
		VPERM2F128(U8(0x20), r[4+q], r[q], t[q])
		VPERM2F128(U8(0x31), r[4+q], r[q], t[4+q])
	}
	if rows < 8 {
		// r[rows:] were overwritten by the shuffles: zero them again.
		for i := rows; i < 8; i++ {
			VXORPS(r[i], r[i], r[i])
		}
	}
	out := GP64()
	MOVQ(dst, out)
	for q := 0; q < 8; q++ {
		switch q % 4 {
		case 0:
			VMOVUPS(t[q], Mem{Base: out})
		case 1:
			VMOVUPS(t[q], Mem{Base: out, Index: stride, Scale: 1})
		case 2:
			VMOVUPS(t[q], Mem{Base: out, Index: stride, Scale: 2})
		case 3:
			VMOVUPS(t[q], Mem{Base: out, Index: stride3, Scale: 1})
			LEAQ(Mem{Base: out, Index: stride, Scale: 4}, out)
		}
	}
	MOVQ(out, dst)
	ADDQ(U8(32), src)
	ADDQ(U8(32), src3)
	ADDQ(U8(32), src6)
	DECQ(n)
	JNZ(LabelRef(name + "_loop"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// copyRows writes the function copyRows<w>, the packing of w neighbouring
// columns of a stored matrix into a sliver:
//
//	dst[p·w + j] = src[p·ld + j],  j < w, p < n.
//
// It moves 8, 4 and 2 floats at a time and reads nothing outside the w
// columns.
func copyRows(w int) {
	name := fmt.Sprintf("copyRows%d", w)
	TEXT(name, NOSPLIT, "func(dst, src *float32, ld, n int)")
	Doc(fmt.Sprintf("%s sets dst[p·%d+j] = src[p·ld+j] for j < %d and p < n. It needs AVX.", name, w, w))
	Pragma("noescape")
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	ld := Load(Param("ld"), GP64())
	n := Load(Param("n"), GP64())
	SHLQ(U8(2), ld)
	TESTQ(n, n)
	JZ(LabelRef(name + "_done"))
	Label(name + "_loop")
	off := 0
	for ; off+8 <= w; off += 8 {
		y := YMM()
		VMOVUPS(Mem{Base: src, Disp: 4 * off}, y)
		VMOVUPS(y, Mem{Base: dst, Disp: 4 * off})
	}
	if off+4 <= w {
		x := XMM()
		VMOVUPS(Mem{Base: src, Disp: 4 * off}, x)
		VMOVUPS(x, Mem{Base: dst, Disp: 4 * off})
		off += 4
	}
	if off+2 <= w {
		r := GP64()
		MOVQ(Mem{Base: src, Disp: 4 * off}, r)
		MOVQ(r, Mem{Base: dst, Disp: 4 * off})
		off += 2
	}
	if off != w {
		panic("copyRows: odd width")
	}
	ADDQ(ld, src)
	ADDQ(U32(4*w), dst)
	DECQ(n)
	JNZ(LabelRef(name + "_loop"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

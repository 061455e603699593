// Command asmgen writes the AVX2+FMA float32 kernels of package vec in Go
// assembly, using avo. It is run by go generate from the vec folder:
//
//	go run ./internal/asmgen -out vec_amd64.s -stubs vec_stub_amd64.go -pkg vec
//
// Every kernel works on n elements with n a multiple of 8 (one YMM vector);
// the Go wrappers in package vec handle the last n mod 8 elements. The
// exponential is the one described in the package documentation:
//
//	t ← min(max(t, −104), 89)                (NaN passes through)
//	n = round(t·log₂e),  r = t − n·ln2_hi − n·ln2_lo
//	p = Σ_{k≤7} r^k/k!                       (Horner, fused multiply-adds)
//	exp t = p · 2^⌊n/2⌋ · 2^(n−⌊n/2⌋)
//
// Splitting 2ⁿ in two halves keeps both factors normal floats for every n
// in [−150, 128], so a result in the subnormal range is rounded once and a
// result above the largest float32 overflows to +Inf.
package main

import (
	"fmt"
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The constants of the exponential, each stored as a vector of 8 equal
// lanes so that it can be a memory operand of a YMM instruction.
var (
	cLog2e  Mem // log₂e
	cLn2Hi  Mem // ln 2 rounded to 9 significant bits: n·ln2_hi is exact
	cLn2Lo  Mem // ln 2 − ln2_hi
	cPoly   [8]Mem
	cBias   Mem // 127, the exponent bias, as int32 lanes
	cLo     Mem // −104: exp below it rounds to 0
	cHi     Mem // 89: exp above it is +Inf
	cNegInf Mem
	cZero   Mem

	cBF16Bias  Mem // 0x7fff: rounding to nearest, before the tie bit
	cOne       Mem // 1, as int32 lanes
	cAbsMask   Mem // 0x7fffffff
	cInf       Mem // 0x7f800000: above it (as |x|) is a NaN
	cQuietBF16 Mem // 0x40: the quiet bit of a bfloat16 NaN

	// The GELU's (see package vec's GELU and geluT).
	cNegHalf    Mem // −1/2
	cNegLn2Hi   Mem // −ln2_hi
	cF32One     Mem // 1.0
	cInvSqrt2Pi Mem // 1/√(2π)
	cGeluUMax   Mem // 14, the clamp of u = |x|
	cGeluC      Mem // c: w = 1/(u + c)
	cGeluA      Mem // A: v = (A·u − c)·w
	cGeluT      []Mem
)

// geluT are the coefficients T_0 … T_10 of package vec's geluT (its
// TestGELUAssemblyConstants compares them with the generated file).
var geluT = []float32{
	0.739548326, -0.270841569, 0.0045693717, 0.0177906882, 0.00203323644, -0.00132870977,
	-0.000618250924, -3.18682651e-05, 8.77169514e-05, 2.4205925e-05, -7.67528672e-06,
}

// vconst declares an 8-lane vector constant of the 32-bit pattern bits.
func vconst(name string, bits uint32) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i := 0; i < 8; i++ {
		DATA(4*i, U32(bits))
	}
	return m
}

func fconst(name string, v float64) Mem { return vconst(name, math.Float32bits(float32(v))) }

func main() {
	ConstraintExpr("!purego")
	cLog2e = fconst("expLog2e", math.Log2E)
	cLn2Hi = fconst("expLn2Hi", 0.693359375)
	cLn2Lo = fconst("expLn2Lo", math.Ln2-0.693359375)
	fact := 1.0
	for k := 0; k < 8; k++ {
		if k > 0 {
			fact *= float64(k)
		}
		cPoly[k] = fconst(fmt.Sprintf("expC%d", k), 1/fact)
	}
	cBias = vconst("expBias", 127)
	cLo = fconst("expLo", -104)
	cHi = fconst("expHi", 89)
	cNegInf = vconst("negInf", 0xff800000)
	cZero = vconst("zero", 0)
	cBF16Bias = vconst("bf16Bias", 0x7fff)
	cOne = vconst("one", 1)
	cAbsMask = vconst("absMask", 0x7fffffff)
	cInf = vconst("posInf", 0x7f800000)
	cQuietBF16 = vconst("bf16Quiet", 0x40)
	cNegHalf = fconst("negHalf", -0.5)
	cNegLn2Hi = fconst("expNegLn2Hi", -0.693359375)
	cF32One = fconst("f32One", 1)
	cInvSqrt2Pi = fconst("invSqrt2Pi", 1/math.Sqrt(2*math.Pi))
	cGeluUMax = fconst("geluUMax", 14)
	cGeluC = fconst("geluC", 2)
	cGeluA = fconst("geluA", 1.5)
	for k, t := range geluT {
		cGeluT = append(cGeluT, vconst(fmt.Sprintf("geluT%d", k), math.Float32bits(t)))
	}

	maxKernel()
	expSumKernel()
	expScaleKernel()
	expPairScaleKernel()
	adamWKernel()
	reluKernel()
	reluGradKernel()
	addKernel()
	addBF16Kernel()
	toBF16Kernel()
	fromBF16Kernel()
	dotKernel()
	scaleKernel()
	scaleSubKernel()
	geluKernel()
	geluGradKernel()
	momentsKernel()
	normAffineKernel()
	normAffineScalarKernel()
	normGradAffineKernel()
	normGradSumsKernel()
	normGradInputKernel()
	normGradInputScalarKernel()
	Generate()
}

// expClamp holds the clamp bounds in registers: a NaN in t must be the
// second source of VMAXPS/VMINPS to pass through, so the bounds cannot be
// memory operands.
type expClamp struct{ lo, hi VecVirtual }

func newExpClamp() expClamp {
	c := expClamp{YMM(), YMM()}
	VMOVUPS(cLo, c.lo)
	VMOVUPS(cHi, c.hi)
	return c
}

// exp overwrites t with exp t, lane by lane.
func (c expClamp) exp(t VecVirtual) {
	VMAXPS(t, c.lo, t) // t = lo > t ? lo : t  (NaN t stays)
	VMINPS(t, c.hi, t) // t = hi < t ? hi : t
	n, nf, p := YMM(), YMM(), YMM()
	VMULPS(cLog2e, t, nf)
	VCVTPS2DQ(nf, n) // round to nearest even (MXCSR default)
	VCVTDQ2PS(n, nf)
	VFNMADD231PS(cLn2Hi, nf, t) // r = t − n·ln2_hi
	VFNMADD231PS(cLn2Lo, nf, t) // r −= n·ln2_lo
	VMOVUPS(cPoly[7], p)
	for k := 6; k >= 0; k-- {
		VFMADD213PS(cPoly[k], t, p) // p = p·r + 1/k!
	}
	// 2^⌊n/2⌋ and 2^(n−⌊n/2⌋) as float bit patterns.
	VPSRAD(Imm(1), n, nf)
	VPSUBD(nf, n, n)
	VPADDD(cBias, nf, nf)
	VPADDD(cBias, n, n)
	VPSLLD(Imm(23), nf, nf)
	VPSLLD(Imm(23), n, n)
	VMULPS(nf, p, p)
	VMULPS(n, p, t)
}

// loop emits a loop over n elements (n a multiple of 8, counted down in
// cnt): first blocks of unroll vectors, then single vectors. body(i) emits
// the work on the i-th vector of the block, at byte offset 32·i from every
// pointer; the pointers advance after each block.
func loop(cnt GPVirtual, ptrs []GPVirtual, unroll int, body func(i int)) {
	strides := make([]int, len(ptrs))
	for i := range strides {
		strides[i] = 32
	}
	loopStrided(cnt, ptrs, strides, unroll, body)
}

// loopStrided is loop over pointers whose elements are not all float32:
// pointer j moves strides[j] bytes per vector of 8 elements (32 for
// float32, 16 for bfloat16), and body addresses its i-th vector at byte
// offset strides[j]·i.
func loopStrided(cnt GPVirtual, ptrs []GPVirtual, strides []int, unroll int, body func(i int)) {
	step := func(k int, label string) {
		Label(label + "Loop")
		CMPQ(cnt, Imm(uint64(8*k)))
		JL(LabelRef(label + "Done"))
		for i := 0; i < k; i++ {
			body(i)
		}
		for j, p := range ptrs {
			ADDQ(Imm(uint64(strides[j]*k)), p)
		}
		SUBQ(Imm(uint64(8*k)), cnt)
		JMP(LabelRef(label + "Loop"))
		Label(label + "Done")
	}
	if unroll > 1 {
		step(unroll, "block")
	}
	step(1, "single")
}

func ptr(name string) GPVirtual {
	r := GP64()
	Load(Param(name), r)
	return r
}

func at(p GPVirtual, i int) Mem { return Mem{Base: p, Disp: 32 * i} }

// broadcast loads the float32 argument name into every lane of a new
// register, straight from the argument frame: loading it first into an XMM
// register with the legacy-SSE MOVSS would, for every argument after the
// first, run an SSE instruction while the upper halves of the YMM
// registers are dirty, which some CPUs charge about 140 ns a call: more
// than the whole kernel on a row of a few hundred values.
func broadcast(name string) VecVirtual {
	p, err := Param(name).Resolve()
	if err != nil {
		panic(err)
	}
	y := YMM()
	VBROADCASTSS(p.Addr, y)
	return y
}

// hsum reduces the 8 lanes of acc to one float32 in lane 0 of the result.
func hsum(acc VecVirtual, op func(a, b, dst Op)) Register {
	hi := XMM()
	VEXTRACTF128(Imm(1), acc, hi)
	lo := acc.AsX()
	op(hi, lo, lo)
	VMOVHLPS(lo, hi, hi)
	op(hi, lo, lo)
	VSHUFPS(Imm(1), lo, lo, hi)
	op(hi, lo, lo)
	return lo
}

func addps(a, b, dst Op) { VADDPS(a, b, dst) }
func maxps(a, b, dst Op) { VMAXPS(a, b, dst) }

func maxKernel() {
	TEXT("maxAVX2", NOSPLIT, "func(x *float32, n int) float32")
	Doc("maxAVX2 returns the largest non-NaN x[i], i < n (−Inf if none), n a multiple of 8.",
		"It needs AVX2.")
	Pragma("noescape")
	x, cnt := ptr("x"), GP64()
	Load(Param("n"), cnt)
	acc := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	for _, a := range acc {
		VMOVUPS(cNegInf, a)
	}
	loop(cnt, []GPVirtual{x}, 4, func(i int) {
		t := YMM()
		VMOVUPS(at(x, i), t)
		VMAXPS(acc[i], t, acc[i]) // t > acc ? t : acc — a NaN t is skipped
	})
	VMAXPS(acc[1], acc[0], acc[0])
	VMAXPS(acc[3], acc[2], acc[2])
	VMAXPS(acc[2], acc[0], acc[0])
	r := hsum(acc[0], maxps)
	VZEROUPPER()
	Store(r, ReturnIndex(0))
	RET()
}

func expSumKernel() {
	TEXT("expSumAVX2", NOSPLIT, "func(x *float32, n int, shift float32) float32")
	Doc("expSumAVX2 returns Σ_{i<n} exp(x[i] − shift), n a multiple of 8. It needs AVX2 and FMA.")
	Pragma("noescape")
	x, cnt := ptr("x"), GP64()
	Load(Param("n"), cnt)
	shift := broadcast("shift")
	c := newExpClamp()
	acc := []VecVirtual{YMM(), YMM()}
	for _, a := range acc {
		VXORPS(a, a, a)
	}
	loop(cnt, []GPVirtual{x}, 2, func(i int) {
		t := YMM()
		VMOVUPS(at(x, i), t)
		VSUBPS(shift, t, t)
		c.exp(t)
		VADDPS(t, acc[i], acc[i])
	})
	VADDPS(acc[1], acc[0], acc[0])
	r := hsum(acc[0], addps)
	VZEROUPPER()
	Store(r, ReturnIndex(0))
	RET()
}

func expScaleKernel() {
	TEXT("expScaleAVX2", NOSPLIT, "func(dst, x *float32, n int, shift, scale float32) float32")
	Doc("expScaleAVX2 sets dst[i] = scale·exp(x[i] − shift) for i < n, n a multiple of 8,",
		"and returns Σ dst[i]·x[i]. dst may be x. It needs AVX2 and FMA.")
	Pragma("noescape")
	dst, x, cnt := ptr("dst"), ptr("x"), GP64()
	Load(Param("n"), cnt)
	shift, scale := broadcast("shift"), broadcast("scale")
	c := newExpClamp()
	acc := []VecVirtual{YMM(), YMM()}
	for _, a := range acc {
		VXORPS(a, a, a)
	}
	loop(cnt, []GPVirtual{dst, x}, 2, func(i int) {
		xv, t := YMM(), YMM()
		VMOVUPS(at(x, i), xv)
		VSUBPS(shift, xv, t)
		c.exp(t)
		VMULPS(scale, t, t)
		VMOVUPS(t, at(dst, i))
		VFMADD231PS(xv, t, acc[i]) // acc += dst·x
	})
	VADDPS(acc[1], acc[0], acc[0])
	r := hsum(acc[0], addps)
	VZEROUPPER()
	Store(r, ReturnIndex(0))
	RET()
}

func expPairScaleKernel() {
	TEXT("expPairScaleAVX2", NOSPLIT, "func(dst, x, b *float32, n int, a, scale float32) float32")
	Doc("expPairScaleAVX2 sets dst[i] = scale·(exp(x[i] − a) + exp(x[i] − b[i])) for i < n,",
		"n a multiple of 8, and returns Σ dst[i]·x[i]. dst may be x. It needs AVX2 and FMA.")
	Pragma("noescape")
	dst, x, b, cnt := ptr("dst"), ptr("x"), ptr("b"), GP64()
	Load(Param("n"), cnt)
	a, scale := broadcast("a"), broadcast("scale")
	c := newExpClamp()
	acc := YMM()
	VXORPS(acc, acc, acc)
	loop(cnt, []GPVirtual{dst, x, b}, 1, func(i int) {
		xv, t1, t2 := YMM(), YMM(), YMM()
		VMOVUPS(at(x, i), xv)
		VSUBPS(a, xv, t1)
		VSUBPS(at(b, i), xv, t2)
		c.exp(t1)
		c.exp(t2)
		VADDPS(t2, t1, t1)
		VMULPS(scale, t1, t1)
		VMOVUPS(t1, at(dst, i))
		VFMADD231PS(xv, t1, acc)
	})
	r := hsum(acc, addps)
	VZEROUPPER()
	Store(r, ReturnIndex(0))
	RET()
}

func adamWKernel() {
	TEXT("adamWAVX2", NOSPLIT, "func(w, grad, m, v *float32, n int, c *[9]float32)")
	Doc("adamWAVX2 applies one AdamW step to the n elements (n a multiple of 8) of w, with",
		"gradient grad and moments m, v, using the scalars in c (see adamWConsts). It needs AVX2 and FMA.")
	Pragma("noescape")
	w, g, m, v, cnt := ptr("w"), ptr("grad"), ptr("m"), ptr("v"), GP64()
	Load(Param("n"), cnt)
	cp := ptr("c")
	k := make([]VecVirtual, 9)
	for i := range k {
		k[i] = YMM()
		VBROADCASTSS(Mem{Base: cp, Disp: 4 * i}, k[i])
	}
	b1, omb1, b2, omb2, ibc1, ibc2, eps, lr, decay := k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8]
	loop(cnt, []GPVirtual{w, g, m, v}, 1, func(i int) {
		gv, mv, vv, wv := YMM(), YMM(), YMM(), YMM()
		VMOVUPS(at(g, i), gv)
		VMULPS(at(m, i), b1, mv)
		VFMADD231PS(gv, omb1, mv) // m = β₁m + (1−β₁)g
		VMOVUPS(mv, at(m, i))
		VMULPS(gv, gv, gv)
		VMULPS(at(v, i), b2, vv)
		VFMADD231PS(gv, omb2, vv) // v = β₂v + (1−β₂)g²
		VMOVUPS(vv, at(v, i))
		VMULPS(ibc2, vv, vv) // v̂
		VSQRTPS(vv, vv)
		VADDPS(eps, vv, vv)  // √v̂ + ε
		VMULPS(ibc1, mv, mv) // m̂
		VDIVPS(vv, mv, mv)   // u = m̂/(√v̂ + ε)
		VMOVUPS(at(w, i), wv)
		VFMADD231PS(wv, decay, mv) // u += λw
		VFNMADD231PS(mv, lr, wv)   // w −= η·u
		VMOVUPS(wv, at(w, i))
	})
	VZEROUPPER()
	RET()
}

func reluKernel() {
	TEXT("reluAVX2", NOSPLIT, "func(dst, x *float32, n int)")
	Doc("reluAVX2 sets dst[i] = max(x[i], 0) for i < n, n a multiple of 8; a NaN stays NaN.",
		"It needs AVX.")
	Pragma("noescape")
	dst, x, cnt := ptr("dst"), ptr("x"), GP64()
	Load(Param("n"), cnt)
	zero := YMM()
	VXORPS(zero, zero, zero)
	loop(cnt, []GPVirtual{dst, x}, 4, func(i int) {
		t := YMM()
		VMAXPS(at(x, i), zero, t) // 0 > x ? 0 : x
		VMOVUPS(t, at(dst, i))
	})
	VZEROUPPER()
	RET()
}

func reluGradKernel() {
	TEXT("reluGradAVX2", NOSPLIT, "func(dx, dy, y *float32, n int)")
	Doc("reluGradAVX2 sets dx[i] = dy[i] if y[i] > 0 and 0 otherwise, for i < n, n a multiple",
		"of 8. It needs AVX.")
	Pragma("noescape")
	dx, dy, y, cnt := ptr("dx"), ptr("dy"), ptr("y"), GP64()
	Load(Param("n"), cnt)
	zero := YMM()
	VXORPS(zero, zero, zero)
	loop(cnt, []GPVirtual{dx, dy, y}, 4, func(i int) {
		t := YMM()
		VCMPPS(Imm(0x11), at(y, i), zero, t) // 0 < y, ordered, quiet (NaN: false)
		VANDPS(at(dy, i), t, t)
		VMOVUPS(t, at(dx, i))
	})
	VZEROUPPER()
	RET()
}

func addKernel() {
	TEXT("addAVX2", NOSPLIT, "func(dst, x *float32, n int)")
	Doc("addAVX2 sets dst[i] += x[i] for i < n, n a multiple of 8. It needs AVX.")
	Pragma("noescape")
	dst, x, cnt := ptr("dst"), ptr("x"), GP64()
	Load(Param("n"), cnt)
	loop(cnt, []GPVirtual{dst, x}, 4, func(i int) {
		t := YMM()
		VMOVUPS(at(dst, i), t)
		VADDPS(at(x, i), t, t)
		VMOVUPS(t, at(dst, i))
	})
	VZEROUPPER()
	RET()
}

// The bfloat16 kernels: a bfloat16 is the upper half of a float32, so
// widening is a zero extension and a shift by 16 bits.

func at16(p GPVirtual, i int) Mem { return Mem{Base: p, Disp: 16 * i} }

// widenBF16 loads the 8 bfloat16 at m as float32 lanes of a new register.
func widenBF16(m Mem) VecVirtual {
	t := YMM()
	VPMOVZXWD(m, t)
	VPSLLD(Imm(16), t, t)
	return t
}

func addBF16Kernel() {
	TEXT("addBF16AVX2", NOSPLIT, "func(dst *float32, x *uint16, n int)")
	Doc("addBF16AVX2 sets dst[i] += float32(x[i]) for i < n, x in bfloat16, n a multiple of 8.",
		"It needs AVX2.")
	Pragma("noescape")
	dst, x, cnt := ptr("dst"), ptr("x"), GP64()
	Load(Param("n"), cnt)
	loopStrided(cnt, []GPVirtual{dst, x}, []int{32, 16}, 4, func(i int) {
		t := widenBF16(at16(x, i))
		VADDPS(at(dst, i), t, t)
		VMOVUPS(t, at(dst, i))
	})
	VZEROUPPER()
	RET()
}

func fromBF16Kernel() {
	TEXT("fromBF16AVX2", NOSPLIT, "func(dst *float32, x *uint16, n int)")
	Doc("fromBF16AVX2 sets dst[i] = float32(x[i]) for i < n, x in bfloat16, n a multiple of 8.",
		"It needs AVX2.")
	Pragma("noescape")
	dst, x, cnt := ptr("dst"), ptr("x"), GP64()
	Load(Param("n"), cnt)
	loopStrided(cnt, []GPVirtual{dst, x}, []int{32, 16}, 4, func(i int) {
		VMOVUPS(widenBF16(at16(x, i)), at(dst, i))
	})
	VZEROUPPER()
	RET()
}

// toBF16Kernel rounds to nearest, ties to even, on the bit patterns:
// h = (b + 0x7fff + ((b >> 16) & 1)) >> 16, and keeps a NaN a quiet NaN:
// h = (b >> 16) | 0x40 where |b| > +Inf.
func toBF16Kernel() {
	TEXT("toBF16AVX2", NOSPLIT, "func(dst *uint16, x *float32, n int)")
	Doc("toBF16AVX2 sets dst[i] = bfloat16(x[i]) for i < n, rounded to nearest even, a NaN",
		"staying a quiet NaN, n a multiple of 8. It needs AVX2.")
	Pragma("noescape")
	dst, x, cnt := ptr("dst"), ptr("x"), GP64()
	Load(Param("n"), cnt)
	bias, one, abs, inf, quiet := YMM(), YMM(), YMM(), YMM(), YMM()
	VMOVDQU(cBF16Bias, bias)
	VMOVDQU(cOne, one)
	VMOVDQU(cAbsMask, abs)
	VMOVDQU(cInf, inf)
	VMOVDQU(cQuietBF16, quiet)
	// round returns the 8 rounded bfloat16 of the float32 at m, each in
	// the low half of a dword lane.
	round := func(m Mem) VecVirtual {
		b, hi, r, nan := YMM(), YMM(), YMM(), YMM()
		VMOVDQU(m, b)
		VPSRLD(Imm(16), b, hi)
		VPAND(one, hi, r)
		VPADDD(bias, r, r)
		VPADDD(b, r, r)
		VPSRLD(Imm(16), r, r)
		VPAND(abs, b, nan)
		VPCMPGTD(inf, nan, nan) // |b| > +Inf: NaN
		VPOR(quiet, hi, hi)
		VPBLENDVB(nan, hi, r, r) // nan ? hi : r
		return r
	}
	// Blocks of 16: two vectors packed into one (per 128-bit lane, so the
	// quadwords are put back in order), then single vectors of 8.
	Label("pairLoop")
	CMPQ(cnt, Imm(16))
	JL(LabelRef("pairDone"))
	r0, r1 := round(at(x, 0)), round(at(x, 1))
	VPACKUSDW(r1, r0, r0)
	VPERMQ(Imm(0xd8), r0, r0)
	VMOVDQU(r0, at(dst, 0))
	ADDQ(Imm(64), x)
	ADDQ(Imm(32), dst)
	SUBQ(Imm(16), cnt)
	JMP(LabelRef("pairLoop"))
	Label("pairDone")
	Label("oneLoop")
	CMPQ(cnt, Imm(8))
	JL(LabelRef("oneDone"))
	r := round(at(x, 0))
	h := XMM()
	VEXTRACTI128(Imm(1), r, h)
	VPACKUSDW(h, r.AsX(), h)
	VMOVDQU(h, at16(dst, 0))
	ADDQ(Imm(32), x)
	ADDQ(Imm(16), dst)
	SUBQ(Imm(8), cnt)
	JMP(LabelRef("oneLoop"))
	Label("oneDone")
	VZEROUPPER()
	RET()
}

func dotKernel() {
	TEXT("dotAVX2", NOSPLIT, "func(x, y *float32, n int) float64")
	Doc("dotAVX2 returns Σ_{i<n} x[i]·y[i], n a multiple of 8, with the products and the sum",
		"in float64. It needs AVX2 and FMA.")
	Pragma("noescape")
	x, y, cnt := ptr("x"), ptr("y"), GP64()
	Load(Param("n"), cnt)
	acc := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	for _, a := range acc {
		VXORPD(a, a, a)
	}
	loop(cnt, []GPVirtual{x, y}, 2, func(i int) {
		for h := 0; h < 2; h++ {
			xv, yv := YMM(), YMM()
			VCVTPS2PD(Mem{Base: x, Disp: 32*i + 16*h}, xv)
			VCVTPS2PD(Mem{Base: y, Disp: 32*i + 16*h}, yv)
			VFMADD231PD(xv, yv, acc[2*i+h])
		}
	})
	VADDPD(acc[1], acc[0], acc[0])
	VADDPD(acc[3], acc[2], acc[2])
	VADDPD(acc[2], acc[0], acc[0])
	hi := XMM()
	VEXTRACTF128(Imm(1), acc[0], hi)
	lo := acc[0].AsX()
	VADDPD(hi, lo, lo)
	VUNPCKHPD(lo, lo, hi)
	VADDSD(hi, lo, lo)
	VZEROUPPER()
	Store(lo, ReturnIndex(0))
	RET()
}

func scaleKernel() {
	TEXT("scaleAVX2", NOSPLIT, "func(dst, x *float32, n int, a float32)")
	Doc("scaleAVX2 sets dst[i] = a·x[i] for i < n, n a multiple of 8. It needs AVX2.")
	Pragma("noescape")
	dst, x, cnt := ptr("dst"), ptr("x"), GP64()
	Load(Param("n"), cnt)
	a := broadcast("a")
	loop(cnt, []GPVirtual{dst, x}, 4, func(i int) {
		t := YMM()
		VMULPS(at(x, i), a, t)
		VMOVUPS(t, at(dst, i))
	})
	VZEROUPPER()
	RET()
}

func scaleSubKernel() {
	TEXT("scaleSubAVX2", NOSPLIT, "func(dst, grad, y *float32, n int, c, a float32)")
	Doc("scaleSubAVX2 sets dst[i] = a·(grad[i] − c·y[i]) for i < n, n a multiple of 8. It needs",
		"AVX2 and FMA.")
	Pragma("noescape")
	dst, g, y, cnt := ptr("dst"), ptr("grad"), ptr("y"), GP64()
	Load(Param("n"), cnt)
	c, a := broadcast("c"), broadcast("a")
	loop(cnt, []GPVirtual{dst, g, y}, 2, func(i int) {
		t := YMM()
		VMOVUPS(at(g, i), t)
		VFNMADD231PS(at(y, i), c, t) // t = g − c·y
		VMULPS(a, t, t)
		VMOVUPS(t, at(dst, i))
	})
	VZEROUPPER()
	RET()
}

// The GELU kernels compute, lane by lane (see package vec's GELU), with
// u = min(|x|, 14):
//
//	e = exp(−u²/2)       (the exponential above, r = fma(−u/2, u, −n·ln2_hi)
//	                      from the unrounded −u²/2, 2ⁿ in one step and
//	                      0 below the smallest normal, n < −126)
//	w = 1/(u + c),  v = fma(A, u, −c)·w,  m = w·T(v)      (Φ(−u) = e·m)
//
// and then y = max(x, 0) − u·(e·m), or the factor of dy: 1 − e·(m − u/√(2π))
// where the sign bit of x is clear, e·(m − u/√(2π)) where it is set.

// geluConsts holds the constants that must be registers: the clamp bound
// of u and the 0 of max(x, 0), first sources of VMINPS and VMAXPS so that
// a NaN, the second source, passes (as in expClamp), and 1, the dividend
// of VDIVPS.
type geluConsts struct{ uMax, zero, one VecVirtual }

func newGeluConsts() geluConsts {
	c := geluConsts{YMM(), YMM(), YMM()}
	VMOVUPS(cGeluUMax, c.uMax)
	VXORPS(c.zero, c.zero, c.zero)
	VMOVUPS(cF32One, c.one)
	return c
}

// parts returns u, e and m of the lanes of x.
func (c geluConsts) parts(x VecVirtual) (u, e, m VecVirtual) {
	u, e, m = YMM(), YMM(), YMM()
	VANDPS(cAbsMask, x, u)
	VMINPS(u, c.uMax, u) // u = 14 < u ? 14 : u  (NaN u stays)

	// e = exp(−u²/2).
	hu, nf, n, r := YMM(), YMM(), YMM(), YMM()
	VMULPS(cNegHalf, u, hu) // −u/2, exact
	VMULPS(u, hu, nf)
	VMULPS(cLog2e, nf, nf)
	VCVTPS2DQ(nf, n) // round to nearest even
	VCVTDQ2PS(n, nf)
	VMULPS(cNegLn2Hi, nf, r)    // −n·ln2_hi, exact
	VFMADD231PS(u, hu, r)       // r = −u²/2 − n·ln2_hi, rounded once
	VFNMADD231PS(cLn2Lo, nf, r) // r −= n·ln2_lo
	VMOVUPS(cPoly[7], e)
	for k := 6; k >= 0; k-- {
		VFMADD213PS(cPoly[k], r, e) // p = p·r + 1/k!
	}
	VPADDD(cBias, n, n)
	VPMAXSD(c.zero, n, n) // n < −126 (and NaN): 2ⁿ taken as 0
	VPSLLD(Imm(23), n, n)
	VMULPS(n, e, e)

	// m = w·T(v).
	w, v := YMM(), YMM()
	VADDPS(cGeluC, u, w)
	VDIVPS(w, c.one, w) // w = 1/(u + c)
	VMOVUPS(cGeluA, v)
	VFMSUB213PS(cGeluC, u, v) // v = A·u − c
	VMULPS(w, v, v)
	VMOVUPS(cGeluT[len(cGeluT)-1], m)
	for k := len(cGeluT) - 2; k >= 0; k-- {
		VFMADD213PS(cGeluT[k], v, m) // t = t·v + T_k
	}
	VMULPS(w, m, m)
	return u, e, m
}

func geluKernel() {
	TEXT("geluAVX2", NOSPLIT, "func(dst, x *float32, n int)")
	Doc("geluAVX2 sets dst[i] = x[i]·Φ(x[i]) for i < n, n a multiple of 8. dst may be x.",
		"It needs AVX2 and FMA.")
	Pragma("noescape")
	dst, x, cnt := ptr("dst"), ptr("x"), GP64()
	Load(Param("n"), cnt)
	c := newGeluConsts()
	loop(cnt, []GPVirtual{dst, x}, 2, func(i int) {
		xv := YMM()
		VMOVUPS(at(x, i), xv)
		u, e, m := c.parts(xv)
		VMULPS(e, m, m)        // Φ(−u)
		VMAXPS(xv, c.zero, xv) // max(x, 0); −0 and NaN stay
		VFNMADD231PS(u, m, xv) // y = max(x, 0) − u·Φ(−u)
		VMOVUPS(xv, at(dst, i))
	})
	VZEROUPPER()
	RET()
}

// The normalisation kernels of LayerNorm and GroupNorm. A row (or group)
// of mean μ ≈ hi + lo (hi = float32(μ), lo = float32(μ − hi)) and
// reciprocal standard deviation r has x̂ = ((x − hi) − lo)·r, three float32
// operations in this order in every kernel, so that Backward recomputes
// exactly the x̂ of Forward.

// norm holds hi, lo and r broadcast to every lane.
type norm struct{ hi, lo, r VecVirtual }

func loadNorm() norm { return norm{broadcast("hi"), broadcast("lo"), broadcast("r")} }

// xhat returns x̂ of the 8 values at m in a new register.
func (c norm) xhat(m Mem) VecVirtual {
	t := YMM()
	VMOVUPS(m, t)
	VSUBPS(c.hi, t, t)
	VSUBPS(c.lo, t, t)
	VMULPS(c.r, t, t)
	return t
}

// widen returns the 8 float32 lanes of v as two float64 vectors: lanes
// 0–3 and lanes 4–7.
func widen(v VecVirtual) (lo, hi VecVirtual) {
	lo, hi = YMM(), YMM()
	h := XMM()
	VCVTPS2PD(v.AsX(), lo)
	VEXTRACTF128(Imm(1), v, h)
	VCVTPS2PD(h, hi)
	return lo, hi
}

// sumPD returns the sum of the 4 float64 lanes of acc in lane 0.
func sumPD(acc VecVirtual) Register {
	hi := XMM()
	VEXTRACTF128(Imm(1), acc, hi)
	lo := acc.AsX()
	VADDPD(hi, lo, lo)
	VUNPCKHPD(lo, lo, hi)
	VADDSD(hi, lo, lo)
	return lo
}

// zeroPD returns k zeroed float64 accumulators.
func zeroPD(k int) []VecVirtual {
	acc := make([]VecVirtual, k)
	for i := range acc {
		acc[i] = YMM()
		VXORPD(acc[i], acc[i], acc[i])
	}
	return acc
}

// addPairs sums acc[0] += acc[1] += … pairwise, in a fixed order, into
// acc[0].
func addPairs(acc []VecVirtual) {
	for w := 1; w < len(acc); w *= 2 {
		for i := 0; i+w < len(acc); i += 2 * w {
			VADDPD(acc[i+w], acc[i], acc[i])
		}
	}
}

func momentsKernel() {
	TEXT("momentsAVX2", NOSPLIT, "func(x *float32, n int, shift float64) (s1, s2 float64)")
	Doc("momentsAVX2 returns s1 = Σ_{i<n} (x[i] − shift) and s2 = Σ_{i<n} (x[i] − shift)², n a",
		"multiple of 8, with the differences, squares and sums in float64. It needs AVX2 and FMA.")
	Pragma("noescape")
	x, cnt := ptr("x"), GP64()
	Load(Param("n"), cnt)
	sp, err := Param("shift").Resolve()
	if err != nil {
		panic(err)
	}
	shift := YMM()
	VBROADCASTSD(sp.Addr, shift)
	s1, s2 := zeroPD(4), zeroPD(4)
	loop(cnt, []GPVirtual{x}, 2, func(i int) {
		for h := 0; h < 2; h++ {
			d := YMM()
			VCVTPS2PD(Mem{Base: x, Disp: 32*i + 16*h}, d)
			VSUBPD(shift, d, d)
			VADDPD(d, s1[2*i+h], s1[2*i+h])
			VFMADD231PD(d, d, s2[2*i+h])
		}
	})
	addPairs(s1)
	addPairs(s2)
	r1 := sumPD(s1[0])
	r2 := sumPD(s2[0])
	VZEROUPPER()
	Store(r1, ReturnIndex(0))
	Store(r2, ReturnIndex(1))
	RET()
}

func normAffineKernel() {
	TEXT("normAffineAVX2", NOSPLIT, "func(y, x, gain, b *float32, n int, hi, lo, r float32)")
	Doc("normAffineAVX2 sets y[i] = gain[i]·x̂[i] + b[i] (one rounding), x̂[i] = ((x[i] − hi) − lo)·r,",
		"for i < n, n a multiple of 8. y may be x. It needs AVX2 and FMA.")
	Pragma("noescape")
	y, x, g, b, cnt := ptr("y"), ptr("x"), ptr("gain"), ptr("b"), GP64()
	Load(Param("n"), cnt)
	c := loadNorm()
	loop(cnt, []GPVirtual{y, x, g, b}, 2, func(i int) {
		t := c.xhat(at(x, i))
		u := YMM()
		VMOVUPS(at(b, i), u)
		VFMADD231PS(at(g, i), t, u) // u = x̂·gain + b
		VMOVUPS(u, at(y, i))
	})
	VZEROUPPER()
	RET()
}

func geluGradKernel() {
	TEXT("geluGradAVX2", NOSPLIT, "func(dx, dy, x *float32, n int)")
	Doc("geluGradAVX2 sets dx[i] = dy[i]·(Φ(x[i]) + x[i]·φ(x[i])) for i < n, n a multiple of 8.",
		"dx may be dy or x. It needs AVX2 and FMA.")
	Pragma("noescape")
	dx, dy, x, cnt := ptr("dx"), ptr("dy"), ptr("x"), GP64()
	Load(Param("n"), cnt)
	c := newGeluConsts()
	loop(cnt, []GPVirtual{dx, dy, x}, 2, func(i int) {
		xv := YMM()
		VMOVUPS(at(x, i), xv)
		u, e, m := c.parts(xv)
		VFNMADD231PS(cInvSqrt2Pi, u, m) // d = m − u/√(2π)
		q := YMM()
		VMULPS(m, e, q)           // e·d: the factor for x ≤ −0
		VFNMADD213PS(c.one, m, e) // 1 − e·d: the factor for x ≥ +0
		VBLENDVPS(xv, q, e, q)    // sign of x set ? e·d : 1 − e·d
		VMULPS(at(dy, i), q, q)
		VMOVUPS(q, at(dx, i))
	})
	VZEROUPPER()
	RET()
}

func normAffineScalarKernel() {
	TEXT("normAffineScalarAVX2", NOSPLIT, "func(y, x *float32, n int, hi, lo, r, gain, b float32)")
	Doc("normAffineScalarAVX2 sets y[i] = gain·x̂[i] + b (one rounding), x̂[i] = ((x[i] − hi) − lo)·r,",
		"for i < n, n a multiple of 8. y may be x. It needs AVX2 and FMA.")
	Pragma("noescape")
	y, x, cnt := ptr("y"), ptr("x"), GP64()
	Load(Param("n"), cnt)
	c := loadNorm()
	g, b := broadcast("gain"), broadcast("b")
	loop(cnt, []GPVirtual{y, x}, 2, func(i int) {
		t := c.xhat(at(x, i))
		VFMADD213PS(b, g, t) // t = gain·x̂ + b
		VMOVUPS(t, at(y, i))
	})
	VZEROUPPER()
	RET()
}

func normGradAffineKernel() {
	TEXT("normGradAffineAVX2", NOSPLIT, "func(dg, db, dy, x, gain *float32, n int, hi, lo, r float32) (sd, sdx float64)")
	Doc("normGradAffineAVX2 sets db[i] += dy[i] and dg[i] += dy[i]·x̂[i] (one rounding), x̂[i] =",
		"((x[i] − hi) − lo)·r, for i < n, n a multiple of 8, and returns sd = Σ d[i] and",
		"sdx = Σ d[i]·x̂[i] with d[i] = dy[i]·gain[i] rounded to float32 and the products and sums",
		"in float64. It needs AVX2 and FMA.")
	Pragma("noescape")
	dg, db, dy, x, g, cnt := ptr("dg"), ptr("db"), ptr("dy"), ptr("x"), ptr("gain"), GP64()
	Load(Param("n"), cnt)
	c := loadNorm()
	s1, s2 := zeroPD(2), zeroPD(2)
	loop(cnt, []GPVirtual{dg, db, dy, x, g}, 1, func(i int) {
		t := c.xhat(at(x, i))
		d, u := YMM(), YMM()
		VMOVUPS(at(dy, i), d)
		VADDPS(at(db, i), d, u)
		VMOVUPS(u, at(db, i))
		VMOVUPS(at(dg, i), u)
		VFMADD231PS(d, t, u) // dg += x̂·dy
		VMOVUPS(u, at(dg, i))
		VMULPS(at(g, i), d, d)
		dlo, dhi := widen(d)
		tlo, thi := widen(t)
		VADDPD(dlo, s1[0], s1[0])
		VADDPD(dhi, s1[1], s1[1])
		VFMADD231PD(dlo, tlo, s2[0])
		VFMADD231PD(dhi, thi, s2[1])
	})
	addPairs(s1)
	addPairs(s2)
	r1 := sumPD(s1[0])
	r2 := sumPD(s2[0])
	VZEROUPPER()
	Store(r1, ReturnIndex(0))
	Store(r2, ReturnIndex(1))
	RET()
}

func normGradSumsKernel() {
	TEXT("normGradSumsAVX2", NOSPLIT, "func(dy, x *float32, n int, hi, lo, r float32) (sdy, sdyx float64)")
	Doc("normGradSumsAVX2 returns sdy = Σ dy[i] and sdyx = Σ dy[i]·x̂[i], x̂[i] =",
		"((x[i] − hi) − lo)·r, over i < n, n a multiple of 8, with the products and sums in",
		"float64. It needs AVX2 and FMA.")
	Pragma("noescape")
	dy, x, cnt := ptr("dy"), ptr("x"), GP64()
	Load(Param("n"), cnt)
	c := loadNorm()
	s1, s2 := zeroPD(4), zeroPD(4)
	loop(cnt, []GPVirtual{dy, x}, 2, func(i int) {
		t := c.xhat(at(x, i))
		d := YMM()
		VMOVUPS(at(dy, i), d)
		dlo, dhi := widen(d)
		tlo, thi := widen(t)
		VADDPD(dlo, s1[2*i], s1[2*i])
		VADDPD(dhi, s1[2*i+1], s1[2*i+1])
		VFMADD231PD(dlo, tlo, s2[2*i])
		VFMADD231PD(dhi, thi, s2[2*i+1])
	})
	addPairs(s1)
	addPairs(s2)
	r1 := sumPD(s1[0])
	r2 := sumPD(s2[0])
	VZEROUPPER()
	Store(r1, ReturnIndex(0))
	Store(r2, ReturnIndex(1))
	RET()
}

func normGradInputKernel() {
	TEXT("normGradInputAVX2", NOSPLIT, "func(dx, dy, x, gain *float32, n int, hi, lo, r, md, mdx float32)")
	Doc("normGradInputAVX2 sets dx[i] = (dy[i]·gain[i] − (md + x̂[i]·mdx))·r, x̂[i] =",
		"((x[i] − hi) − lo)·r, with md + x̂·mdx rounded once, for i < n, n a multiple of 8.",
		"dx may be dy. It needs AVX2 and FMA.")
	Pragma("noescape")
	dx, dy, x, g, cnt := ptr("dx"), ptr("dy"), ptr("x"), ptr("gain"), GP64()
	Load(Param("n"), cnt)
	c := loadNorm()
	md, mdx := broadcast("md"), broadcast("mdx")
	loop(cnt, []GPVirtual{dx, dy, x, g}, 2, func(i int) {
		t := c.xhat(at(x, i))
		VFMADD213PS(md, mdx, t) // t = mdx·x̂ + md
		d := YMM()
		VMOVUPS(at(dy, i), d)
		VMULPS(at(g, i), d, d)
		VSUBPS(t, d, d)
		VMULPS(c.r, d, d)
		VMOVUPS(d, at(dx, i))
	})
	VZEROUPPER()
	RET()
}

func normGradInputScalarKernel() {
	TEXT("normGradInputScalarAVX2", NOSPLIT, "func(dx, dy, x *float32, n int, hi, lo, r, gain, md, mdx float32)")
	Doc("normGradInputScalarAVX2 sets dx[i] = (gain·dy[i] − (md + x̂[i]·mdx))·r, x̂[i] =",
		"((x[i] − hi) − lo)·r, with md + x̂·mdx rounded once, for i < n, n a multiple of 8.",
		"dx may be dy. It needs AVX2 and FMA.")
	Pragma("noescape")
	dx, dy, x, cnt := ptr("dx"), ptr("dy"), ptr("x"), GP64()
	Load(Param("n"), cnt)
	c := loadNorm()
	g, md, mdx := broadcast("gain"), broadcast("md"), broadcast("mdx")
	loop(cnt, []GPVirtual{dx, dy, x}, 2, func(i int) {
		t := c.xhat(at(x, i))
		VFMADD213PS(md, mdx, t) // t = mdx·x̂ + md
		d := YMM()
		VMULPS(at(dy, i), g, d)
		VSUBPS(t, d, d)
		VMULPS(c.r, d, d)
		VMOVUPS(d, at(dx, i))
	})
	VZEROUPPER()
	RET()
}

package vec

import "math"

// portable is the implementation in Go, for every CPU.
var portable = kernels{
	name:         "go",
	max:          maxGo,
	expSum:       expSumGo,
	expScale:     expScaleGo,
	expPairScale: expPairScaleGo,
	adamW:        adamWGo,
	relu:         reluGo,
	reluGrad:     reluGradGo,
	add:          addGo,
	addBF16:      addBF16Go,
	toBF16:       toBF16Go,
	fromBF16:     fromBF16Go,
	dot:          dotGo,
	scale:        scaleGo,
	scaleSub:     scaleSubGo,
	gelu:         geluGo,
	geluGrad:     geluGradGo,

	moments:             momentsGo,
	normAffine:          normAffineGo,
	normAffineScalar:    normAffineScalarGo,
	normGradAffine:      normGradAffineGo,
	normGradSums:        normGradSumsGo,
	normGradInput:       normGradInputGo,
	normGradInputScalar: normGradInputScalarGo,
}

// Constants of exp32 (see the package documentation).
const (
	log2e = math.Log2E
	ln2Hi = 0.693359375 // 9 significant bits: n·ln2Hi is exact for |n| < 2¹⁵
	ln2Lo = math.Ln2 - ln2Hi
	expLo = -104 // exp t rounds to 0 below
	expHi = 89   // exp t is +Inf above
)

// exp32 is the float32 exponential of the package documentation, written
// with the same steps as the assembly.
func exp32(t float32) float32 {
	if t != t {
		return t
	}
	t = min(max(t, expLo), expHi)
	nf := float32(math.RoundToEven(float64(t * log2e)))
	r := t - nf*ln2Hi
	r -= nf * ln2Lo
	p := float32(1.0 / 5040)
	p = p*r + 1.0/720
	p = p*r + 1.0/120
	p = p*r + 1.0/24
	p = p*r + 1.0/6
	p = p*r + 0.5
	p = p*r + 1
	p = p*r + 1
	n := int32(nf)
	n1 := n >> 1
	n2 := n - n1
	return p * math.Float32frombits(uint32(n1+127)<<23) * math.Float32frombits(uint32(n2+127)<<23)
}

func maxGo(x []float32) float32 {
	m := float32(math.Inf(-1))
	for _, v := range x {
		if v > m {
			m = v
		}
	}
	return m
}

func expSumGo(x []float32, shift float32) float32 {
	var s float32
	for _, v := range x {
		s += exp32(v - shift)
	}
	return s
}

func expScaleGo(dst, x []float32, shift, scale float32) float32 {
	var dot float32
	for i, v := range x {
		e := scale * exp32(v-shift)
		dst[i] = e
		dot += e * v
	}
	return dot
}

func expPairScaleGo(dst, x []float32, a float32, b []float32, scale float32) float32 {
	var dot float32
	for i, v := range x {
		e := scale * (exp32(v-a) + exp32(v-b[i]))
		dst[i] = e
		dot += e * v
	}
	return dot
}

func adamWGo(w, g, m, v []float32, c adamWConsts) {
	b1, omb1, b2, omb2, ibc1, ibc2, eps, lr, decay := c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
	for i, gi := range g {
		mi := b1*m[i] + omb1*gi
		vi := b2*v[i] + omb2*(gi*gi)
		m[i], v[i] = mi, vi
		u := (mi * ibc1) / (float32(math.Sqrt(float64(vi*ibc2))) + eps)
		u += decay * w[i]
		w[i] -= lr * u
	}
}

func reluGo(dst, x []float32) {
	for i, v := range x {
		dst[i] = max(v, 0)
	}
}

func reluGradGo(dx, dy, y []float32) {
	for i, v := range y {
		if v > 0 {
			dx[i] = dy[i]
		} else {
			dx[i] = 0
		}
	}
}

func addGo(dst, x []float32) {
	for i, v := range x {
		dst[i] += v
	}
}

func dotGo(x, y []float32) float64 {
	var s float64
	for i, v := range x {
		s += float64(v) * float64(y[i])
	}
	return s
}

func scaleGo(dst, x []float32, a float32) {
	for i, v := range x {
		dst[i] = a * v
	}
}

func scaleSubGo(dst, g, y []float32, c, a float32) {
	for i, v := range g {
		dst[i] = a * float32(float64(v)-float64(c)*float64(y[i]))
	}
}

// bf16 rounds f to the nearest bfloat16, ties to even, on its bit pattern
// b: (b + 0x7fff + bit 16 of b) >> 16; a NaN keeps its upper bits with the
// quiet bit set.
func bf16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// widenBF16 is the float32 whose upper half is h.
func widenBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

func addBF16Go(dst []float32, x []uint16) {
	for i, h := range x {
		dst[i] += widenBF16(h)
	}
}

func toBF16Go(dst []uint16, x []float32) {
	for i, v := range x {
		dst[i] = bf16(v)
	}
}

func fromBF16Go(dst []float32, x []uint16) {
	for i, h := range x {
		dst[i] = widenBF16(h)
	}
}

// Constants of the GELU (see GELU).
const (
	geluUMax   = 14  // u = min(|x|, 14): exp(−u²/2) is 0 from u = 13.2 on
	geluC      = 2   // w = 1/(u + c)
	geluA      = 1.5 // v = (A·u − c)·w, from −1 at u = 0 to 19/16 at u = 14
	invSqrt2Pi = 0.3989422804014327
)

// geluT holds the coefficients of T(v) = Σ_k T_k v^k, the minimax fit of
// relative error to M(u)·(u + c)/√(2π), M(u) = Φ(−u)/φ(u) the Mills ratio,
// over u ∈ [0, 14], each rounded to float32 with the higher ones refitted;
// with them, w·T(v) is M(u)/√(2π) to 2.3·10⁻⁸ (relative, in float64).
// internal/asmgen writes the same numbers into the assembly.
var geluT = [...]float32{
	0.739548326, -0.270841569, 0.0045693717, 0.0177906882, 0.00203323644, -0.00132870977,
	-0.000618250924, -3.18682651e-05, 8.77169514e-05, 2.4205925e-05, -7.67528672e-06,
}

// geluParts returns, for u = min(|x|, geluUMax), u itself, e = exp(−u²/2)
// and m = w·T(v) ≈ M(u)/√(2π), so that Φ(−u) = e·m and φ(u) = e/√(2π).
// It takes the formulas of the assembly in float64, where a fused
// multiply-add is not needed for accuracy: exp(−u²/2) by the reduction
// −u²/2 = n·ln 2 + r and the degree-7 Taylor polynomial of exp r, e = 0
// where n < −126 as in the assembly; both polynomials as their even and
// odd parts, two short chains of multiply-adds rather than one long one.
func geluParts(x float32) (u, e, m float64) {
	u = min(math.Abs(widen(x)), geluUMax)
	a := -0.5 * u * u
	// n = a·log₂e rounded to the nearest integer, ties to even, by adding
	// and subtracting 1.5·2⁵² (|n| < 2⁵¹; a NaN stays NaN).
	nf := a*log2e + 0x1.8p52 - 0x1.8p52
	if nf < -126 {
		return u, 0, 0
	}
	r := a - nf*math.Ln2
	r2 := r * r // Σ_{k≤7} r^k/k! = even(r²) + r·odd(r²)
	pe := ((r2*(1.0/720)+1.0/24)*r2+0.5)*r2 + 1
	po := ((r2*(1.0/5040)+1.0/120)*r2+1.0/6)*r2 + 1
	e = (pe + r*po) * math.Float64frombits(uint64(int64(nf)+1023)<<52)
	w := 1 / (u + geluC)
	v := (geluA*u - geluC) * w
	v2 := v * v // T(v) = even(v²) + v·odd(v²)
	even, odd := float64(geluT[10]), float64(geluT[9])
	for k := 8; k >= 0; k -= 2 {
		even = even*v2 + float64(geluT[k])
	}
	for k := 7; k >= 1; k -= 2 {
		odd = odd*v2 + float64(geluT[k])
	}
	return u, e, w * (even + v*odd)
}

// widen is float64(f), built from the bits of a normal f through an
// integer register: on amd64 the float32-to-float64 conversion merges
// into its destination register, which would make each element of a loop
// wait for the end of the previous one.
func widen(f float32) float64 {
	b := math.Float32bits(f)
	if e := b >> 23 & 0xff; e != 0 && e != 0xff {
		return math.Float64frombits(uint64(b>>31)<<63 | uint64(e+1023-127)<<52 | uint64(b&0x7fffff)<<29)
	}
	return float64(f) // ±0, subnormals, ±Inf, NaN
}

func geluGo(dst, x []float32) {
	for i, v := range x {
		u, e, m := geluParts(v)
		r := v // max(x, 0), −0 and NaN kept as by the assembly's VMAXPS
		if 0 > v {
			r = 0
		}
		dst[i] = float32(float64(r) - u*(e*m)) // max(x, 0) − |x|·Φ(−|x|)
	}
}

func geluGradGo(dx, dy, x []float32) {
	for i, v := range x {
		u, e, m := geluParts(v)
		d := m - u*invSqrt2Pi // (Φ(−u) − u·φ(u))/e
		g := 1 - e*d          // x ≥ +0: 1 − Φ(−x) + x·φ(x)
		if math.Float32bits(v)>>31 != 0 {
			g = e * d // x ≤ −0: Φ(x) + x·φ(x)
		}
		dx[i] = dy[i] * float32(g)
	}
}

func momentsGo(x []float32, shift float64) (s1, s2 float64) {
	for _, v := range x {
		d := float64(v) - shift
		s1 += d
		s2 += d * d
	}
	return s1, s2
}

func normAffineGo(y, x, g, b []float32, c Norm) {
	for i, v := range x {
		y[i] = g[i]*c.XHat(v) + b[i]
	}
}

func normAffineScalarGo(y, x []float32, c Norm, g, b float32) {
	for i, v := range x {
		y[i] = g*c.XHat(v) + b
	}
}

func normGradAffineGo(dg, db, dy, x, g []float32, c Norm) (sd, sdx float64) {
	for i, v := range dy {
		xh := c.XHat(x[i])
		db[i] += v
		dg[i] += v * xh
		d := float64(v * g[i])
		sd += d
		sdx += d * float64(xh)
	}
	return sd, sdx
}

func normGradSumsGo(dy, x []float32, c Norm) (sdy, sdyx float64) {
	for i, v := range dy {
		d := float64(v)
		sdy += d
		sdyx += d * float64(c.XHat(x[i]))
	}
	return sdy, sdyx
}

func normGradInputGo(dx, dy, x, g []float32, c Norm, md, mdx float32) {
	for i, v := range dy {
		dx[i] = (v*g[i] - (md + c.XHat(x[i])*mdx)) * c.R
	}
}

func normGradInputScalarGo(dx, dy, x []float32, c Norm, g, md, mdx float32) {
	for i, v := range dy {
		dx[i] = (g*v - (md + c.XHat(x[i])*mdx)) * c.R
	}
}

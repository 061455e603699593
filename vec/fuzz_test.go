package vec

import (
	"encoding/binary"
	"math"
	"testing"
)

// floats decodes little-endian float32s from data.
func floats(data []byte) []float32 {
	x := make([]float32, len(data)/4)
	for i := range x {
		x[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
	}
	return x
}

// FuzzExp feeds arbitrary bit patterns (NaNs, infinities, subnormals) to
// the exponential kernels of every implementation and compares each entry
// with math.Exp.
func FuzzExp(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0x80, 0x7f, 0, 0, 0x80, 0xff, 1, 0, 0, 0}, float32(0), float32(1))
	f.Add(make([]byte, 4*19), float32(math.Inf(-1)), float32(0.5))
	f.Add([]byte{0xff, 0xff, 0x7f, 0x7f, 0xff, 0xff, 0x7f, 0xff, 0, 0, 0xc0, 0x7f}, float32(88), float32(3))
	f.Fuzz(func(t *testing.T, data []byte, shift, scale float32) {
		x := floats(data)
		for _, k := range implementations() {
			dst := make([]float32, len(x))
			k.expScale(dst, x, shift, 1)
			for i, v := range x {
				if d := ulps(dst[i], exp64(v, shift)); d > 2 {
					t.Fatalf("%s: exp(%v − %v) = %v, want %v", k.name, v, shift, dst[i], exp64(v, shift))
				}
			}
			// The pair kernel against the same reference, with the
			// row reversed as the second shift vector.
			b := make([]float32, len(x))
			for i := range b {
				b[i] = x[len(x)-1-i]
			}
			k.expPairScale(dst, x, shift, b, scale)
			for i, v := range x {
				want := float32(float64(scale) * (float64(exp64(v, shift)) + float64(exp64(v, b[i]))))
				got := dst[i]
				if want != want || got != got {
					if (want != want) != (got != got) && !math.IsInf(float64(scale), 0) && scale != 0 {
						t.Fatalf("%s: pair(%v, %v, %v)·%v = %v, want %v", k.name, v, shift, b[i], scale, got, want)
					}
					continue
				}
				// Each exponential may round to a subnormal before the
				// scale multiplies it, in the kernel and in the reference
				// alike, so besides 6 ulps of the result allow two
				// subnormal steps (2⁻¹⁴⁹) per exponential times |scale|.
				subnormal := 4 * math.Abs(float64(scale)) * 0x1p-149
				if d := ulps(got, want); d > 6 && math.Abs(float64(got)-float64(want)) > math.Max(1e-44, subnormal) {
					t.Fatalf("%s: pair(%v, %v, %v)·%v = %v, want %v", k.name, v, shift, b[i], scale, got, want)
				}
			}
			if got, want := k.max(x), maxGo(x); got != want {
				t.Fatalf("%s: Max = %v, want %v", k.name, got, want)
			}
		}
	})
}

// FuzzImplementationsAgree runs the element-wise kernels of every
// implementation on arbitrary bit patterns and demands the same results as
// the portable Go: bit for bit where both round once (ReLU, its gradient,
// Add, Scale, Max), to rounding elsewhere.
func FuzzImplementationsAgree(f *testing.F) {
	f.Add([]byte{0, 0, 0x80, 0x7f, 0, 0, 0xc0, 0x7f, 0, 0, 0, 0x80, 1, 0, 0, 0, 0, 0, 0x80, 0x3f}, float32(0.5))
	f.Add(make([]byte, 4*33), float32(-2))
	f.Fuzz(func(t *testing.T, data []byte, a float32) {
		x := floats(data)
		y := make([]float32, len(x))
		for i := range y {
			y[i] = x[len(x)-1-i]
		}
		want, got := &portable, implementations()
		for _, k := range got[1:] {
			same := func(name string, p, q []float32) {
				t.Helper()
				for i := range p {
					if math.Float32bits(p[i]) != math.Float32bits(q[i]) && !(p[i] != p[i] && q[i] != q[i]) && !(p[i] == 0 && q[i] == 0) {
						t.Fatalf("%s %s: [%d] = %v, go %v", k.name, name, i, q[i], p[i])
					}
				}
			}
			p, q := make([]float32, len(x)), make([]float32, len(x))
			want.relu(p, x)
			k.relu(q, x)
			same("ReLU", p, q)
			want.reluGrad(p, x, y)
			k.reluGrad(q, x, y)
			same("ReLUGrad", p, q)
			want.scale(p, x, a)
			k.scale(q, x, a)
			same("Scale", p, q)
			copy(p, x)
			copy(q, x)
			want.add(p, y)
			k.add(q, y)
			same("Add", p, q)
			hp, hq := make([]uint16, len(x)), make([]uint16, len(x))
			want.toBF16(hp, x)
			k.toBF16(hq, x)
			for i := range hp {
				if hp[i] != hq[i] {
					t.Fatalf("%s ToBF16(%#x) = %#x, go %#x", k.name, math.Float32bits(x[i]), hq[i], hp[i])
				}
			}
			want.fromBF16(p, hp)
			k.fromBF16(q, hp)
			same("FromBF16", p, q)
			copy(p, y)
			copy(q, y)
			want.addBF16(p, hp)
			k.addBF16(q, hp)
			same("AddBF16", p, q)
			if m, n := want.max(x), k.max(x); m != n && !(m != m && n != n) {
				t.Fatalf("%s Max = %v, go %v", k.name, n, m)
			}
			// Two summation orders of a dot product differ by at most
			// about n·ε·Σ|x_i·y_i|, which is not small against the sum
			// itself when its terms cancel.
			dw, dk := want.dot(x, y), k.dot(x, y)
			var mag float64
			for i := range x {
				mag += math.Abs(float64(x[i]) * float64(y[i]))
			}
			if !(dw == dk || dw != dw && dk != dk || math.Abs(dw-dk) <= 1e-12*mag) {
				t.Fatalf("%s Dot = %v, go %v", k.name, dk, dw)
			}
			want.scaleSub(p, x, y, a, 0.75)
			k.scaleSub(q, x, y, a, 0.75)
			for i := range p {
				// Go rounds g − c·y twice (float64, then float32), the
				// assembly once: the results may differ by 2 ulp.
				if ulps(p[i], q[i]) > 2 && math.Abs(float64(p[i]-q[i])) > 1e-44 {
					t.Fatalf("%s ScaleSub [%d] = %v, go %v", k.name, i, q[i], p[i])
				}
			}
			// The normalisation kernels on the row x with a Norm made from
			// a: x̂ is the same bits in both; an output that the assembly
			// rounds once by a fused multiply-add may differ from Go's by
			// the rounding of a product, which is a few ulp of the larger
			// of its terms (scale), and a float64 sum by its rounding.
			c := Norm{Hi: a, Lo: a * 0x1p-30, R: 0.75}
			near := func(name string, p, q []float32, scale func(i int) float64) {
				t.Helper()
				for i := range p {
					e := math.Abs(float64(p[i]) - float64(q[i]))
					if ulps(p[i], q[i]) > 2 && e > 1e-44 && !(e <= 4*0x1p-24*scale(i)) &&
						!math.IsInf(float64(p[i]), 0) && !math.IsInf(float64(q[i]), 0) && !math.IsInf(scale(i), 0) {
						t.Fatalf("%s %s [%d] = %v, go %v", k.name, name, i, q[i], p[i])
					}
				}
			}
			xh := func(i int) float64 { return math.Abs(float64(c.XHat(x[i]))) }
			want.normAffine(p, x, y, x, c)
			k.normAffine(q, x, y, x, c)
			near("NormAffine", p, q, func(i int) float64 { return math.Abs(float64(y[i]))*xh(i) + math.Abs(float64(x[i])) })
			want.normAffineScalar(p, x, c, 1.5, a)
			k.normAffineScalar(q, x, c, 1.5, a)
			near("NormAffineScalar", p, q, func(i int) float64 { return 1.5*xh(i) + math.Abs(float64(a)) })
			sums := func(name string, a1, a2, b1, b2, mag float64) {
				t.Helper()
				for _, pair := range [][2]float64{{a1, b1}, {a2, b2}} {
					u, v := pair[0], pair[1]
					if !(u == v || u != u && v != v || math.Abs(u-v) <= 1e-12*mag || math.IsInf(mag, 0) || mag != mag) {
						t.Fatalf("%s %s = %v, go %v", k.name, name, v, u)
					}
				}
			}
			var gmag float64
			for i := range x {
				xh := float64(c.XHat(x[i]))
				gmag += math.Abs(float64(y[i])) * (1 + math.Abs(xh))
			}
			w1, w2 := want.normGradSums(y, x, c)
			k1, k2 := k.normGradSums(y, x, c)
			sums("NormGradSums", w1, w2, k1, k2, gmag)
			m1, m2 := want.moments(x, float64(a))
			n1, n2 := k.moments(x, float64(a))
			var mmag float64
			for _, v := range x {
				d := math.Abs(float64(v) - float64(a))
				mmag += d + d*d
			}
			sums("Moments", m1, m2, n1, n2, mmag)
			// (d − (md + x̂·mdx))·R: the terms of the difference set the
			// scale.
			want.normGradInput(p, y, x, x, c, 0.25, a)
			k.normGradInput(q, y, x, x, c, 0.25, a)
			near("NormGradInput", p, q, func(i int) float64 {
				return (math.Abs(float64(y[i]*x[i])) + 0.25 + xh(i)*math.Abs(float64(a))) * 0.75
			})
			want.normGradInputScalar(p, y, x, c, 1.5, 0.25, a)
			k.normGradInputScalar(q, y, x, c, 1.5, 0.25, a)
			near("NormGradInputScalar", p, q, func(i int) float64 {
				return (math.Abs(float64(1.5*y[i])) + 0.25 + xh(i)*math.Abs(float64(a))) * 0.75
			})
		}
	})
}

// FuzzGELU feeds arbitrary bit patterns to the GELU kernels of every
// implementation and compares y = x Φ(x) and the gradient factor
// Φ(x) + x φ(x) with the float64 reference within the documented bounds
// (ulps of max(1, |x|)); dx must be dy times that factor, bit for bit,
// with dy the row reversed.
func FuzzGELU(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0x20, 0x42, 0, 0, 0x20, 0xc2, 0, 0, 0x80, 0x7f, 0, 0, 0x80, 0xff, 0, 0, 0xc0, 0x7f})
	f.Add(make([]byte, 4*19))
	f.Fuzz(func(t *testing.T, data []byte) {
		x := floats(data)
		dy := make([]float32, len(x))
		for i := range dy {
			dy[i] = x[len(x)-1-i]
		}
		for _, k := range implementations() {
			y, g := geluOf(k, x)
			dx := make([]float32, len(x))
			k.geluGrad(dx, dy, x)
			for i, v := range x {
				ry, rg := geluRef(v)
				if d := geluErr(y[i], ry, v); d > geluTolY {
					t.Fatalf("%s: GELU(%v) = %v, want %v (%.2f ulp)", k.name, v, y[i], ry, d)
				}
				if d := geluErr(g[i], rg, v); d > geluTolG {
					t.Fatalf("%s: GELU'(%v) = %v, want %v (%.2f ulp)", k.name, v, g[i], rg, d)
				}
				if want := dy[i] * g[i]; math.Float32bits(dx[i]) != math.Float32bits(want) && !(dx[i] != dx[i] && want != want) {
					t.Fatalf("%s: GELUGrad(%v, dy %v) = %v, want %v", k.name, v, dy[i], dx[i], want)
				}
			}
		}
	})
}

package contrastive

import (
	"math"

	"github.com/infonce/infonce/vec"
)

// The float32 forms of the softmax-gradient loops. Every entry of G goes
// through vec.ExpPairScale or vec.ExpScale (float32 exponentials of
// S_ij − lse, the log-sum-exps rounded to float32); the few entries that
// carry an indicator term (the diagonal, or the positives under masking,
// the partner view in NT-Xent) are recomputed in float64 from the exact
// log-sum-exps, since there the indicator cancels most of the
// probabilities. The float64 objectives never come here: they keep
// math.Exp throughout.

// isFloat32 reports whether T is float32.
func isFloat32[T any]() bool {
	var x T
	_, ok := any(x).(float32)
	return ok
}

// prepare32 lays the gathered statistics out as contiguous float32 rows,
// lse32[k·B+i] = statistic k of row i, and sizes the row buffer.
func (c *CLIP[T]) prepare32(B, ns, chunk int) {
	if !isFloat32[T]() {
		return
	}
	c.lse32 = grow(c.lse32, ns*B)
	for i := 0; i < B; i++ {
		for k := 0; k < ns; k++ {
			c.lse32[k*B+i] = float32(c.gstats[i*ns+k])
		}
	}
	c.buf32 = grow(c.buf32, min(chunk, B))
}

// rowsG32 is rowsG for float32: row i of the tile becomes
// (exp(S_ij − lse_row_i) + exp(S_ij − lse_col_j))/(2B), corrected at the
// positives.
func (c *CLIP[T]) rowsG32(tile []float32, l layout, c0, w, ns int, ids []int32, inv float64) float64 {
	B := l.B
	lr, lc := c.lse32[statRow*B:statRow*B+B], c.lse32[statCol*B:statCol*B+B]
	buf := c.buf32[:w]
	var dt float64
	for i := 0; i < l.b; i++ {
		gi := l.off + i
		row := tile[i*w : i*w+w]
		dot := float64(vec.ExpPairScale(buf, row, lr[gi], lc[c0:c0+w], float32(inv)))
		if ids != nil {
			for jj, id := range ids[c0 : c0+w] {
				if id == ids[gi] {
					dot += c.fix32(buf, row, jj, gi, c0+jj, ns, ids, inv)
				}
			}
		} else if jj := gi - c0; jj >= 0 && jj < w {
			dot += c.fix32(buf, row, jj, gi, gi, ns, nil, inv)
		}
		copy(row, buf)
		dt += dot
	}
	return dt
}

// colsG32 is colsG for float32: tile row j (owned column j against rows
// c0..c0+w) becomes (exp(S_ij − lse_row_i) + exp(S_ij − lse_col_j))/(2B),
// corrected at the positives.
func (c *CLIP[T]) colsG32(tile []float32, l layout, c0, w, ns int, ids []int32, inv float64) {
	B := l.B
	lr, lc := c.lse32[statRow*B:statRow*B+B], c.lse32[statCol*B:statCol*B+B]
	buf := c.buf32[:w]
	for j := 0; j < l.b; j++ {
		gj := l.off + j
		col := tile[j*w : j*w+w]
		vec.ExpPairScale(buf, col, lc[gj], lr[c0:c0+w], float32(inv))
		if ids != nil {
			for ii, id := range ids[c0 : c0+w] {
				if id == ids[gj] {
					c.fix32(buf, col, ii, c0+ii, gj, ns, ids, inv)
				}
			}
		} else if ii := gj - c0; ii >= 0 && ii < w {
			c.fix32(buf, col, ii, gj, gj, ns, nil, inv)
		}
		copy(col, buf)
	}
}

// fix32 recomputes buf[k] = G_ij in float64 from the logit x[k] = S_ij and
// returns the change of G_ij·S_ij.
func (c *CLIP[T]) fix32(buf, x []float32, k, i, j, ns int, ids []int32, inv float64) float64 {
	sij := float64(x[k])
	g := c.gij(sij, i, j, ns, ids) * inv
	old := float64(buf[k])
	buf[k] = float32(g)
	return (g - old) * sij
}

// coefficients32 is the float32 form of NT-Xent's second pass on the row
// of anchor a (logits S_am, m = c0..c0+len(row)): C_am = (exp(S_am − la) +
// exp(S_am − lse_m))/(2B), 0 at m = a, minus 2/(2B) at the partner p
// (recomputed in float64 from lp = lse_p). It returns Σ_m C_am S_am.
func (n *NTXent[T]) coefficients32(row []float32, c0, a, p int, la, lp, inv float64) float64 {
	w := len(row)
	buf := n.buf32[:w]
	ka, kp := a-c0, p-c0
	if ka >= 0 && ka < w {
		// S_aa is not a logit of the loss and may exceed la by far: give
		// the kernel a harmless value there (both exponents 0) and zero it.
		row[ka] = n.lse32[a]
	}
	dot := float64(vec.ExpPairScale(buf, row, float32(la), n.lse32[c0:c0+w], float32(inv)))
	if ka >= 0 && ka < w {
		dot -= float64(buf[ka]) * float64(row[ka])
		buf[ka] = 0
	}
	if kp >= 0 && kp < w {
		sap := float64(row[kp])
		cp := (math.Exp(sap-la) + math.Exp(sap-lp) - 2) * inv
		dot += (cp - float64(buf[kp])) * sap
		buf[kp] = float32(cp)
	}
	copy(row, buf)
	return dot
}

// probabilities32 is the float32 form of MoCo's second pass: every row i
// of the tile (width w) becomes weight·exp(l_ij − lse_i), computed as
// weight·exp(lse_i − ŝ_i)⁻¹·exp(l_ij − ŝ_i) with ŝ_i = lse_i rounded to
// float32, so that the rounding of the shift cancels. It returns
// Σ_ij p_ij·l_ij.
func (m *MoCo[T]) probabilities32(tile []float32, b, w int, weight float64) float64 {
	var dt float64
	for i := 0; i < b; i++ {
		row := tile[i*w : i*w+w]
		shift := float32(m.lse[i])
		scale := weight * math.Exp(float64(shift)-m.lse[i])
		dt += float64(vec.ExpScale(row, row, shift, float32(scale)))
	}
	return dt
}

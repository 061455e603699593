package contrastive

import (
	"context"
	"fmt"

	"github.com/infonce/infonce/gemm"
)

// contrastNegatives is contrast with reweighted or debiased negatives
// (m.Negatives): query i's positive is its key, its negatives the K keys
// of the queue, and the loss is weight·Σ_i ℓ(i) with ℓ the anchor loss of
// Negatives. The queue is the same on every rank and a query's terms need
// only its own row, so, as for the plain loss, nothing is gathered. It
// expects m.pos to hold the positive logits; it returns the loss and
// dL/dt and writes dq_i = weight·s·[dℓ/dl_i0·k_i + Σ_j dℓ/dl_ij·queue_j].
func (m *MoCo[T]) contrastNegatives(ctx context.Context, q, k, dq []T, d, b, chunk int, s T, weight float64) (loss, dt float64, err error) {
	qd, K := m.Queue.data, m.Queue.size
	m.nacc = grow(m.nacc, b)
	m.nt = grow(m.nt, b*ngWidth)
	beta := m.Negatives.Beta
	for i := 0; i < b; i++ {
		m.nacc[i].reset()
		m.nacc[i].add(beta, m.pos[i], true)
	}
	for c0 := 0; c0 < K; c0 += chunk {
		if err := ctx.Err(); err != nil {
			return 0, 0, fmt.Errorf("moco: %w", err)
		}
		w := min(chunk, K-c0)
		tile := m.tile[:b*w]
		gemm.Gemm(false, true, b, w, d, s, q, d, qd[c0*d:], d, 0, tile, w)
		for i := 0; i < b; i++ {
			for _, x := range tile[i*w : i*w+w] {
				m.nacc[i].add(beta, float64(x), false)
			}
		}
	}
	for i := 0; i < b; i++ {
		li, fi := m.Negatives.terms(&m.nacc[i], float64(s), m.nt[i*ngWidth:i*ngWidth+ngWidth])
		loss += li
		dt += weight * fi
	}
	term := func(i int) []float64 { return m.nt[i*ngWidth : i*ngWidth+ngWidth] }
	for c0 := 0; c0 < K; c0 += chunk {
		if err := ctx.Err(); err != nil {
			return 0, 0, fmt.Errorf("moco: %w", err)
		}
		w := min(chunk, K-c0)
		tile := m.tile[:b*w]
		gemm.Gemm(false, true, b, w, d, s, q, d, qd[c0*d:], d, 0, tile, w)
		for i := 0; i < b; i++ {
			row := tile[i*w : i*w+w]
			for j, x := range row {
				g := weight * m.Negatives.grad(term(i), float64(x), false)
				dt += g * float64(x)
				row[j] = T(g)
			}
		}
		gb := T(1)
		if c0 == 0 {
			gb = 0
		}
		gemm.Gemm(false, false, b, d, w, s, tile, w, qd[c0*d:], d, gb, dq, d)
	}
	for i := 0; i < b; i++ {
		c := weight * m.Negatives.grad(term(i), m.pos[i], true)
		dt += c * m.pos[i]
		cs := c * float64(s)
		row, key := dq[i*d:i*d+d], k[i*d:i*d+d]
		for j := range row {
			row[j] += T(cs * float64(key[j]))
		}
	}
	return weight * loss, dt, nil
}

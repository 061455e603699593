package contrastive

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/infonce/infonce/gemm"
)

// Queue is MoCo's dictionary: a FIFO ring of Size keys of dimension D,
// each L2-normalised. The oldest keys are overwritten first; Ptr is where
// the next key goes. It is identical on every rank and part of the
// checkpoint (Data, Ptr, Restore).
type Queue[T gemm.Float] struct {
	size, d int
	data    []T // size×d
	ptr     int
}

// NewQueue returns a queue of size random unit vectors of dimension d,
// drawn from a PCG stream seeded with seed (the same seed gives the same
// queue on every rank). It panics if size or d is not positive, a
// programming error.
func NewQueue[T gemm.Float](size, d int, seed uint64) *Queue[T] {
	if size <= 0 || d <= 0 {
		panic(fmt.Sprintf("contrastive: NewQueue(%d, %d): size and dimension must be positive", size, d))
	}
	rng := rand.New(rand.NewPCG(seed, 0x6d6f636f71756575)) // "mocoqueu"
	q := &Queue[T]{size: size, d: d, data: make([]T, size*d)}
	for i := 0; i < size; i++ {
		row := q.data[i*d : i*d+d]
		var nrm float64
		for nrm == 0 {
			nrm = 0
			for j := range row {
				x := rng.NormFloat64()
				row[j] = T(x)
				nrm += float64(row[j]) * float64(row[j])
			}
		}
		nrm = 1 / math.Sqrt(nrm)
		for j := range row {
			row[j] = T(float64(row[j]) * nrm)
		}
	}
	return q
}

// Size is the number of keys in the queue.
func (q *Queue[T]) Size() int { return q.size }

// Dim is the key dimension.
func (q *Queue[T]) Dim() int { return q.d }

// Data is the queue's storage, Size×D row-major, in slot order (not in age
// order: slot Ptr holds the oldest key). It aliases the queue.
func (q *Queue[T]) Data() []T { return q.data }

// Ptr is the slot the next key is written to.
func (q *Queue[T]) Ptr() int { return q.ptr }

// Restore replaces the queue's keys and pointer, from a checkpoint. data
// must hold Size×D values and ptr lie in [0, Size).
func (q *Queue[T]) Restore(data []T, ptr int) error {
	if len(data) != len(q.data) {
		return fmt.Errorf("contrastive: restore queue: %d values, want %d keys × %d = %d", len(data), q.size, q.d, len(q.data))
	}
	if ptr < 0 || ptr >= q.size {
		return fmt.Errorf("contrastive: restore queue: pointer %d outside [0, %d)", ptr, q.size)
	}
	copy(q.data, data)
	q.ptr = ptr
	return nil
}

// push writes the n keys of keys (n×D) at the pointer and advances it; the
// caller ensures n divides Size, so a push never wraps inside itself.
func (q *Queue[T]) push(keys []T, n int) {
	copy(q.data[q.ptr*q.d:(q.ptr+n)*q.d], keys)
	q.ptr = (q.ptr + n) % q.size
}

// MoCo is the momentum-contrast objective (He et al. 2020, v2 with a
// queue). The logits of query q_i are [s·q_i·k_i, s·q_i·queue_j for every
// queue key j]; the loss is the cross-entropy with the positive at index 0,
//
//	ctr(q, k) = 1/B·Σ_i [lse(logits_i) − s·q_i·k_i],
//
// over the global batch of B queries. With Symmetric the loss is
// ½[ctr(q1, k2) + ctr(q2, k1)] (the symmetrised loss of MoCo v3). The keys
// and the queue come from the momentum encoder: no gradient flows into
// them, only into the queries and t.
//
// Since a query's logits involve only its own key and the queue (the same
// on every rank), Compute is exact without communication; Enqueue gathers
// the keys so that every rank's queue stays identical. A MoCo keeps its
// work buffers and must not be used by two goroutines at once.
type MoCo[T gemm.Float] struct {
	Queue     *Queue[T]
	Symmetric bool
	// Chunk is the number of queue keys whose logits are held at once
	// (DefaultChunk if 0).
	Chunk int
	// Negatives reweights the queue's negatives of every query (hard
	// negatives, debiasing); the zero value is plain MoCo.
	Negatives Negatives

	tile []T       // b×chunk logits, then probabilities
	accM []float64 // running maxima: b
	accZ []float64 // running sums: b
	lse  []float64 // b
	pos  []float64 // positive logits: b
	keys []T       // gathered keys for Enqueue: B×d
	bc   []int
	nacc []negAcc  // Negatives only: sums of the local queries: b
	nt   []float64 // Negatives only: terms of the local queries: b×ngWidth
}

// MoCoInput holds one rank's part of a MoCo step.
type MoCoInput[T gemm.Float] struct {
	Q1, K2   []T   // queries of view 1 and momentum-encoder keys of view 2, local b×D
	Q2, K1   []T   // the other pairing, only when Symmetric
	D        int   // embedding dimension
	Counts   []int // samples of every rank, in rank order (the same on every rank)
	Scale    T     // s = exp(t)
	DQ1, DQ2 []T   // out: dL/dQ1 (and dL/dQ2 when Symmetric) for the local queries (overwritten)
}

// Compute returns this rank's share of the MoCo loss and of dL/dt, and
// writes the exact gradients with respect to the local queries.
func (m *MoCo[T]) Compute(ctx context.Context, coll Collective, in MoCoInput[T]) (Result[T], error) {
	var res Result[T]
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if m.Queue == nil {
		return res, fmt.Errorf("moco: no queue")
	}
	l, err := newLayout(coll, in.Counts)
	if err != nil {
		return res, fmt.Errorf("moco: %w", err)
	}
	if in.D != m.Queue.d {
		return res, fmt.Errorf("moco: embedding dimension %d, queue has %d", in.D, m.Queue.d)
	}
	bufs := []struct {
		name string
		v    []T
	}{{"Q1", in.Q1}, {"K2", in.K2}, {"DQ1", in.DQ1}, {"Q2", in.Q2}, {"K1", in.K1}, {"DQ2", in.DQ2}}
	if !m.Symmetric {
		bufs = bufs[:3]
	}
	for _, x := range bufs {
		if err := checkLen(x.name, x.v, l.b, in.D); err != nil {
			return res, fmt.Errorf("moco: %w", err)
		}
	}
	if err := checkScale(in.Scale); err != nil {
		return res, fmt.Errorf("moco: %w", err)
	}
	if err := m.Negatives.Validate(); err != nil {
		return res, fmt.Errorf("moco: %w", err)
	}
	chunk, err := chunkOf(m.Chunk, m.Queue.size)
	if err != nil {
		return res, fmt.Errorf("moco: %w", err)
	}
	b := l.b
	m.tile = grow(m.tile, b*chunk)
	m.accM = grow(m.accM, b)
	m.accZ = grow(m.accZ, b)
	m.lse = grow(m.lse, b)
	m.pos = grow(m.pos, b)

	w := 1 / float64(l.B)
	if !m.Symmetric {
		loss, dt, err := m.contrast(ctx, in.Q1, in.K2, in.DQ1, in.D, b, chunk, in.Scale, w)
		return Result[T]{Loss: T(loss), DT: T(dt)}, err
	}
	w /= 2
	loss1, dt1, err := m.contrast(ctx, in.Q1, in.K2, in.DQ1, in.D, b, chunk, in.Scale, w)
	if err != nil {
		return res, err
	}
	loss2, dt2, err := m.contrast(ctx, in.Q2, in.K1, in.DQ2, in.D, b, chunk, in.Scale, w)
	return Result[T]{Loss: T(loss1 + loss2), DT: T(dt1 + dt2)}, err
}

// contrast computes weight·Σ_i [lse(l_i) − l_i0] over the local queries
// and writes its gradient dq_i = weight·s·[(p_i0 − 1)·k_i + Σ_j p_ij·queue_j]
// (p the softmax of the logits l_i) into dq. It returns the loss and its
// dL/dt = weight·Σ_i Σ_j (p_ij − [j = 0])·l_ij.
func (m *MoCo[T]) contrast(ctx context.Context, q, k, dq []T, d, b, chunk int, s T, weight float64) (loss, dt float64, err error) {
	qd, K := m.Queue.data, m.Queue.size
	for i := 0; i < b; i++ {
		var dot float64
		for j := 0; j < d; j++ {
			dot += float64(q[i*d+j]) * float64(k[i*d+j])
		}
		// The positive logit, rounded to T like the other logits.
		m.pos[i] = float64(T(float64(s) * dot))
		m.accM[i], m.accZ[i] = m.pos[i], 1
	}
	if m.Negatives.On() {
		return m.contrastNegatives(ctx, q, k, dq, d, b, chunk, s, weight)
	}
	for c0 := 0; c0 < K; c0 += chunk {
		if err := ctx.Err(); err != nil {
			return 0, 0, fmt.Errorf("moco: %w", err)
		}
		w := min(chunk, K-c0)
		tile := m.tile[:b*w]
		gemm.Gemm(false, true, b, w, d, s, q, d, qd[c0*d:], d, 0, tile, w)
		for i := 0; i < b; i++ {
			lseAdd(&m.accM[i], &m.accZ[i], tile[i*w:i*w+w])
		}
	}
	for i := 0; i < b; i++ {
		m.lse[i] = lseValue(m.accM[i], m.accZ[i])
		loss += m.lse[i] - m.pos[i]
	}
	for c0 := 0; c0 < K; c0 += chunk {
		if err := ctx.Err(); err != nil {
			return 0, 0, fmt.Errorf("moco: %w", err)
		}
		w := min(chunk, K-c0)
		tile := m.tile[:b*w]
		gemm.Gemm(false, true, b, w, d, s, q, d, qd[c0*d:], d, 0, tile, w)
		if t32, ok := any(tile).([]float32); ok {
			dt += m.probabilities32(t32, b, w, weight)
		} else {
			for i := 0; i < b; i++ {
				row := tile[i*w : i*w+w]
				for j, x := range row {
					p := weight * math.Exp(float64(x)-m.lse[i])
					dt += p * float64(x)
					row[j] = T(p)
				}
			}
		}
		beta := T(1)
		if c0 == 0 {
			beta = 0
		}
		gemm.Gemm(false, false, b, d, w, s, tile, w, qd[c0*d:], d, beta, dq, d)
	}
	for i := 0; i < b; i++ {
		c := weight * (math.Exp(m.pos[i]-m.lse[i]) - 1)
		dt += c * m.pos[i]
		cs := c * float64(s)
		row, key := dq[i*d:i*d+d], k[i*d:i*d+d]
		for j := range row {
			row[j] += T(cs * float64(key[j]))
		}
	}
	return weight * loss, dt, nil
}

// Enqueue all-gathers the local keys (b×d) of every rank and pushes the B
// global keys, in rank order, into the queue, so that the queue is
// identical on every rank. The queue size must be a multiple of B (as in
// MoCo), so that a push never straddles the end of the ring. On error the
// queue is unchanged.
func (m *MoCo[T]) Enqueue(ctx context.Context, coll Collective, keys []T, d int, counts []int) error {
	if m.Queue == nil {
		return fmt.Errorf("moco: enqueue: no queue")
	}
	l, err := newLayout(coll, counts)
	if err != nil {
		return fmt.Errorf("moco: enqueue: %w", err)
	}
	if d != m.Queue.d {
		return fmt.Errorf("moco: enqueue: key dimension %d, queue has %d", d, m.Queue.d)
	}
	if err := checkLen("keys", keys, l.b, d); err != nil {
		return fmt.Errorf("moco: enqueue: %w", err)
	}
	if m.Queue.size%l.B != 0 {
		return fmt.Errorf("moco: enqueue: queue size %d is not a multiple of the global batch %d", m.Queue.size, l.B)
	}
	m.keys = grow(m.keys, l.B*d)
	if err := gatherRows(ctx, coll, keys, m.keys, counts, d, &m.bc); err != nil {
		return fmt.Errorf("moco: enqueue: gather keys: %w", err)
	}
	m.Queue.push(m.keys, l.B)
	return nil
}

// MomentumUpdate implements the momentum encoder's update
// θ_k ← m·θ_k + (1−m)·θ_q, element by element. It panics if the two
// parameter vectors differ in length, a programming error.
func MomentumUpdate[T gemm.Float](thetaK, thetaQ []T, m T) {
	if len(thetaK) != len(thetaQ) {
		panic(fmt.Sprintf("contrastive: MomentumUpdate: %d key parameters, %d query parameters", len(thetaK), len(thetaQ)))
	}
	for i, q := range thetaQ {
		thetaK[i] = m*thetaK[i] + (1-m)*q
	}
}

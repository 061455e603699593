package allreduce

import (
	"context"
	"fmt"
)

// span is the element range [off, off+n) of a buffer.
type span struct{ off, n int }

// evenSpans cuts n elements into k contiguous segments whose sizes differ
// by at most one (the first n mod k segments are one longer).
func evenSpans(n, k int) []span {
	s := make([]span, k)
	for i := range s {
		s[i] = evenSpan(n, k, i)
	}
	return s
}

// evenSpan is segment i of evenSpans(n, k), without the slice.
func evenSpan(n, k, i int) span {
	q, r := n/k, n%k
	s := span{i*q + min(i, r), q}
	if i < r {
		s.n++
	}
	return s
}

// countSpans turns per-rank counts into segments; it checks that there is
// one count per rank, none negative, and that they add up to total.
func countSpans(counts []int, k, total int) ([]span, error) {
	if len(counts) != k {
		return nil, fmt.Errorf("allreduce: %d counts for a ring of %d ranks", len(counts), k)
	}
	s := make([]span, k)
	off := 0
	for i, c := range counts {
		if c < 0 {
			return nil, fmt.Errorf("allreduce: negative count %d for rank %d", c, i)
		}
		s[i] = span{off, c}
		off += c
	}
	if off != total {
		return nil, fmt.Errorf("allreduce: counts add up to %d, buffer holds %d", off, total)
	}
	return s, nil
}

func nchunks(n, chunk int) int {
	if n == 0 {
		return 1 // an empty segment still sends one (empty) message per step
	}
	return (n + chunk - 1) / chunk
}

// ringSchedule fills r.sends and r.recvs with the messages of a ring pass
// over segs: reduceSteps steps of reduce-scatter followed by gatherSteps
// steps of all-gather, every segment cut into chunks of chunk elements.
//
// Reduce-scatter step t (0 <= t < K-1) sends segment r-t-1 and adds the
// received segment r-t-2 into the buffer, so after K-1 steps rank r holds
// the complete sum of segment r. All-gather step a sends segment r-a and
// stores the received segment r-a-1. In both, the segment sent at step t
// is the one received at step t-1, so chunk c of step t leaves as soon as
// chunk c of step t-1 has arrived: the pipeline of the ring algorithm.
// roundOwned marks the last reduce-scatter receive for rounding to the wire
// precision, so that the owner keeps exactly the value the others receive.
func (r *Ring) ringSchedule(segs []span, chunk, reduceSteps, gatherSteps int, roundOwned bool) {
	k, me := r.size, r.cfg.Rank
	seg := func(i int) span { return segs[((i%k)+k)%k] }
	r.sends, r.recvs = r.sends[:0], r.recvs[:0]
	prevBase := -1 // index in recvs of the first chunk received at step t-1
	for t := 0; t < reduceSteps+gatherSteps; t++ {
		var out, in span
		reduce := t < reduceSteps
		if reduce {
			out, in = seg(me-t-1), seg(me-t-2)
		} else {
			a := t - reduceSteps
			out, in = seg(me-a), seg(me-a-1)
		}
		for c := range nchunks(out.n, chunk) {
			lo := out.off + c*chunk
			dep := -1
			if prevBase >= 0 {
				dep = prevBase + c
			}
			r.sends = append(r.sends, Msg{Lo: lo, Hi: min(lo+chunk, out.off+out.n), Dep: dep})
		}
		prevBase = len(r.recvs)
		round := roundOwned && reduce && t == reduceSteps-1
		for c := range nchunks(in.n, chunk) {
			lo := in.off + c*chunk
			r.recvs = append(r.recvs, Msg{Lo: lo, Hi: min(lo+chunk, in.off+in.n), Dep: -1, Reduce: reduce, Round: round})
		}
	}
}

// AllReduce replaces buf on every rank with the element-wise sum over all
// ranks: a reduce-scatter followed by an all-gather around the ring, each
// rank sending 2(K-1)/K of the buffer. With the BFloat16 wire the result
// is identical on every rank and within BFloat16Bound of the exact sum.
func (r *Ring) AllReduce(ctx context.Context, buf []float32) error {
	if d := r.inPlace; d != nil && len(buf) > 0 {
		if off, ok := d.Offset(buf); ok {
			return r.collective(ctx, opAllReduce, func(ctx context.Context, tag uint64) (int, error) {
				return d.AllReduce(ctx, r.cfg.Rank, uint32(tag>>32), off, len(buf))
			})
		}
	}
	return r.collective(ctx, opAllReduce, func(ctx context.Context, tag uint64) (int, error) {
		if r.size == 1 {
			return 0, nil
		}
		chunk := max(1, r.cfg.ChunkBytes/4)
		r.ringSchedule(evenSpans(len(buf), r.size), chunk, r.size-1, r.size-1, r.cfg.Wire == BFloat16)
		return r.pass(ctx, tag, f32Bytes(buf), elemF32)
	})
}

// AllReduce64 is AllReduce for float64 buffers, always sent as float64
// (the exact path for gradient checks).
func (r *Ring) AllReduce64(ctx context.Context, buf []float64) error {
	return r.collective(ctx, opAllReduce64, func(ctx context.Context, tag uint64) (int, error) {
		if r.size == 1 {
			return 0, nil
		}
		chunk := max(1, r.cfg.ChunkBytes/8)
		r.ringSchedule(evenSpans(len(buf), r.size), chunk, r.size-1, r.size-1, false)
		return r.pass(ctx, tag, f64Bytes(buf), elemF64)
	})
}

// ReduceScatter sums buf over all ranks segment by segment: afterwards
// buf[off_r : off_r+counts[r]] on rank r holds the sum of that segment,
// where off_r = counts[0] + ... + counts[r-1]. The counts may differ and
// must add up to len(buf); the rest of buf holds partial sums.
func (r *Ring) ReduceScatter(ctx context.Context, buf []float32, counts []int) error {
	segs, err := countSpans(counts, r.size, len(buf))
	if err != nil {
		return err
	}
	return r.collective(ctx, opReduceScatter, func(ctx context.Context, tag uint64) (int, error) {
		if r.size == 1 {
			return 0, nil
		}
		chunk := max(1, r.cfg.ChunkBytes/4)
		r.ringSchedule(segs, chunk, r.size-1, 0, false)
		return r.pass(ctx, tag, f32Bytes(buf), elemF32)
	})
}

// AllGather concatenates every rank's send bytes in rank order into recv on
// every rank. counts[k] is the number of bytes rank k contributes (they may
// differ); len(send) must be counts[Rank()] and len(recv) their sum.
func (r *Ring) AllGather(ctx context.Context, send, recv []byte, counts []int) error {
	segs, err := countSpans(counts, r.size, len(recv))
	if err != nil {
		return err
	}
	me := segs[r.cfg.Rank]
	if len(send) != me.n {
		return fmt.Errorf("allreduce: allgather: rank %d sends %d bytes but counts say %d", r.cfg.Rank, len(send), me.n)
	}
	return r.collective(ctx, opAllGather, func(ctx context.Context, tag uint64) (int, error) {
		copy(recv[me.off:me.off+me.n], send)
		if r.size == 1 {
			return 0, nil
		}
		r.ringSchedule(segs, r.cfg.ChunkBytes, 0, r.size-1, false)
		return r.pass(ctx, tag, recv, elemByte)
	})
}

// Broadcast copies root's buf into buf on every rank; buf must have the
// same length everywhere. The chunks travel root -> root+1 -> ... and
// every rank forwards a chunk as soon as it has it.
func (r *Ring) Broadcast(ctx context.Context, buf []byte, root int) error {
	if root < 0 || root >= r.size {
		return fmt.Errorf("allreduce: broadcast root %d outside ring of %d", root, r.size)
	}
	return r.collective(ctx, opBroadcast, func(ctx context.Context, tag uint64) (int, error) {
		if r.size == 1 {
			return 0, nil
		}
		chunk := r.cfg.ChunkBytes
		n := nchunks(len(buf), chunk)
		r.sends, r.recvs = r.sends[:0], r.recvs[:0]
		me := r.cfg.Rank
		for c := range n {
			lo, hi := c*chunk, min((c+1)*chunk, len(buf))
			if me != root {
				r.recvs = append(r.recvs, Msg{Lo: lo, Hi: hi, Dep: -1})
			}
			switch {
			case me == root:
				r.sends = append(r.sends, Msg{Lo: lo, Hi: hi, Dep: -1})
			case r.right() != root:
				r.sends = append(r.sends, Msg{Lo: lo, Hi: hi, Dep: c})
			}
		}
		return r.pass(ctx, tag, buf, elemByte)
	})
}

// Shift sends send to the right neighbour and receives the left
// neighbour's send into recv: one hop of a ring exchange, as a loss that
// passes blocks round the ring uses. The blocks may differ in size from
// rank to rank; len(recv) must be the left neighbour's len(send). On one
// rank recv receives send.
func (r *Ring) Shift(ctx context.Context, send, recv []byte) error {
	return r.collective(ctx, opShift, func(ctx context.Context, tag uint64) (int, error) {
		if r.size == 1 {
			if len(recv) != len(send) {
				return 0, fmt.Errorf("allreduce: shift: %d bytes sent to itself, %d expected", len(send), len(recv))
			}
			copy(recv, send)
			return 0, nil
		}
		// One buffer, send then recv: the sends go to the right, the
		// receives land after them, chunk by chunk in the same sizes as
		// the left neighbour cuts its own send.
		ns := len(send)
		buf := r.shiftBuf[:0]
		buf = append(buf, send...)
		buf = append(buf, make([]byte, len(recv))...)
		r.shiftBuf = buf
		chunk := r.cfg.ChunkBytes
		r.sends, r.recvs = r.sends[:0], r.recvs[:0]
		for c := range nchunks(ns, chunk) {
			r.sends = append(r.sends, Msg{Lo: c * chunk, Hi: min((c+1)*chunk, ns), Dep: -1})
		}
		for c := range nchunks(len(recv), chunk) {
			r.recvs = append(r.recvs, Msg{Lo: ns + c*chunk, Hi: ns + min((c+1)*chunk, len(recv)), Dep: -1})
		}
		peer, err := r.pass(ctx, tag, buf, elemByte)
		if err == nil {
			copy(recv, buf[ns:])
		}
		return peer, err
	})
}

// Barrier returns once every rank has entered it: K-1 empty messages go
// round the ring, each sent after the previous one arrived, so the last one
// carries news from every rank.
func (r *Ring) Barrier(ctx context.Context) error {
	return r.collective(ctx, opBarrier, func(ctx context.Context, tag uint64) (int, error) {
		if r.size == 1 {
			return 0, nil
		}
		r.sends, r.recvs = r.sends[:0], r.recvs[:0]
		for t := range r.size - 1 {
			r.sends = append(r.sends, Msg{Dep: t - 1})
			r.recvs = append(r.recvs, Msg{Dep: -1})
		}
		return r.pass(ctx, tag, nil, elemByte)
	})
}

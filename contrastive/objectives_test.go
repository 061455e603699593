package contrastive

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// With every embedding equal all logits are equal: the loss is the log of
// the number of candidates, whatever the scale.
func TestChanceLevel(t *testing.T) {
	const d = 3
	same := func(rows int) []float64 {
		x := make([]float64, rows*d)
		for i := 0; i < rows; i++ {
			x[i*d], x[i*d+1], x[i*d+2] = 0.6, 0, 0.8
		}
		return x
	}
	for _, B := range []int{1, 2, 7, 64} {
		for _, s := range []float64{1, 1 / 0.07, 100} {
			c := CLIP[float64]{Chunk: 5}
			in := CLIPInput[float64]{U: same(B), V: same(B), D: d, Counts: []int{B}, Scale: s,
				DU: make([]float64, B*d), DV: make([]float64, B*d)}
			res, err := c.Compute(context.Background(), Single{}, in)
			if err != nil {
				t.Fatal(err)
			}
			if want := math.Log(float64(B)); math.Abs(res.Loss-want) > 1e-12 {
				t.Errorf("CLIP B=%d s=%v: loss %v, want ln B = %v", B, s, res.Loss, want)
			}
			n := NTXent[float64]{Chunk: 5}
			nin := NTXentInput[float64]{Z1: same(B), Z2: same(B), D: d, Counts: []int{B}, Scale: s,
				DZ1: make([]float64, B*d), DZ2: make([]float64, B*d)}
			if res, err = n.Compute(context.Background(), Single{}, nin); err != nil {
				t.Fatal(err)
			}
			if want := math.Log(float64(2*B - 1)); math.Abs(res.Loss-want) > 1e-12 {
				t.Errorf("NT-Xent N=%d s=%v: loss %v, want ln(2N−1) = %v", B, s, res.Loss, want)
			}
			q := NewQueue[float64](5, d, 1)
			if err := q.Restore(same(5), 0); err != nil {
				t.Fatal(err)
			}
			m := MoCo[float64]{Queue: q, Chunk: 2}
			mi := MoCoInput[float64]{Q1: same(B), K2: same(B), D: d, Counts: []int{B}, Scale: s, DQ1: make([]float64, B*d)}
			if res, err = m.Compute(context.Background(), Single{}, mi); err != nil {
				t.Fatal(err)
			}
			if want := math.Log(6); math.Abs(res.Loss-want) > 1e-12 {
				t.Errorf("MoCo B=%d s=%v: loss %v, want ln(K+1) = %v", B, s, res.Loss, want)
			}
		}
	}
}

// Masking with distinct ids is the plain loss; with duplicate ids it is
// lower (fewer terms are negatives).
func TestMaskingDistinctIDsIsPlain(t *testing.T) {
	const B, d = 9, 5
	rng := rand.New(rand.NewPCG(31, 0))
	u, v := unitRows(rng, B, d), unitRows(rng, B, d)
	run := func(ids []int32) (Result[float64], []float64, []float64) {
		c := CLIP[float64]{Chunk: 4, MaskFalseNegatives: ids != nil}
		in := CLIPInput[float64]{U: u, V: v, D: d, Counts: []int{B}, Scale: 10, IDs: ids,
			DU: make([]float64, B*d), DV: make([]float64, B*d)}
		res, err := c.Compute(context.Background(), Single{}, in)
		if err != nil {
			t.Fatal(err)
		}
		return res, in.DU, in.DV
	}
	plain, pu, pv := run(nil)
	distinct, du, dv := run([]int32{10, 11, 12, 13, 14, 15, 16, 17, 18})
	if relErr1(distinct.Loss, plain.Loss) > 1e-14 || relErr1(distinct.DT, plain.DT) > 1e-12 ||
		relErr(du, pu) > 1e-12 || relErr(dv, pv) > 1e-12 {
		t.Errorf("masking with distinct ids differs from the plain loss: %v vs %v", distinct, plain)
	}
	dup, _, _ := run([]int32{1, 1, 1, 2, 2, 3, 4, 5, 6})
	if !(dup.Loss < plain.Loss) {
		t.Errorf("masked loss %v not below plain loss %v with duplicate captions", dup.Loss, plain.Loss)
	}
}

func TestLogSumExp(t *testing.T) {
	// s = 1e4 over a million logits: the naive sum overflows, the stable
	// form gives max + ln(count) for equal logits.
	const n = 1 << 20
	big := make([]float64, n)
	for i := range big {
		big[i] = 1e4 * 1
	}
	if got, want := LogSumExp(big), 1e4+math.Log(n); math.Abs(got-want) > 1e-9*want {
		t.Errorf("LogSumExp of %d × 1e4 = %v, want %v", n, got, want)
	}
	big32 := conv[float32](big)
	if got, want := LogSumExp(big32), float32(1e4+math.Log(n)); math.Abs(float64(got-want)) > 1e-6*float64(want) {
		t.Errorf("float32 LogSumExp = %v, want %v", got, want)
	}
	// Very negative logits underflow naively.
	neg := []float64{-1e4, -1e4 - math.Log(3)}
	if got, want := LogSumExp(neg), -1e4+math.Log(4.0/3); math.Abs(got-want) > 1e-9 {
		t.Errorf("LogSumExp(%v) = %v, want %v", neg, got, want)
	}
	for _, tc := range []struct {
		name string
		x    []float64
		want float64
	}{
		{"empty", nil, math.Inf(-1)},
		{"all -inf", []float64{math.Inf(-1), math.Inf(-1)}, math.Inf(-1)},
		{"one -inf", []float64{math.Inf(-1), 2}, 2},
		{"+inf", []float64{1, math.Inf(1)}, math.Inf(1)},
		{"nan", []float64{1, math.NaN()}, math.NaN()},
		{"nan only", []float64{math.NaN()}, math.NaN()},
		{"pair", []float64{0, 0}, math.Ln2},
		{"mixed", []float64{1, 2, 3}, math.Log(math.E + math.E*math.E + math.E*math.E*math.E)},
	} {
		got := LogSumExp(tc.x)
		if !(got == tc.want || math.IsNaN(got) && math.IsNaN(tc.want) || math.Abs(got-tc.want) < 1e-14) {
			t.Errorf("%s: LogSumExp(%v) = %v, want %v", tc.name, tc.x, got, tc.want)
		}
	}
}

// The streaming accumulator over arbitrary chunks equals the one-shot
// log-sum-exp, also when a later chunk raises the maximum by a lot.
func TestStreamingLSE(t *testing.T) {
	rng := rand.New(rand.NewPCG(32, 0))
	for trial := 0; trial < 50; trial++ {
		n := 1 + rng.IntN(200)
		x := make([]float64, n)
		for i := range x {
			x[i] = 1e4 * (rng.Float64()*2 - 1)
		}
		m, z := math.Inf(-1), 0.0
		for lo := 0; lo < n; {
			hi := min(n, lo+1+rng.IntN(17))
			lseAdd(&m, &z, x[lo:hi])
			lo = hi
		}
		if got, want := lseValue(m, z), naiveLSE(x); math.Abs(got-want) > 1e-12*math.Abs(want) {
			t.Fatalf("trial %d: streamed %v, one-shot %v", trial, got, want)
		}
	}
}

func FuzzLogSumExp(f *testing.F) {
	f.Add(1.0, -2.0, 3.0, uint8(2))
	f.Add(1e4, -1e4, 0.0, uint8(1))
	f.Fuzz(func(t *testing.T, a, b, c float64, split uint8) {
		x := []float64{a, b, c}
		for _, v := range x {
			if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e300 {
				t.Skip("the streamed form is compared on finite inputs only")
			}
		}
		k := int(split) % 4
		m, z := math.Inf(-1), 0.0
		lseAdd(&m, &z, x[:k])
		lseAdd(&m, &z, x[k:])
		got, want := lseValue(m, z), LogSumExp(x)
		if math.Abs(got-want) > 1e-12*max(1, math.Abs(want)) {
			t.Errorf("LSE%v split at %d: %v, one-shot %v", x, k, got, want)
		}
		if want < max(a, b, c) || want > max(a, b, c)+math.Log(3)+1e-12*max(1, math.Abs(want)) {
			t.Errorf("LSE%v = %v outside [max, max+ln 3]", x, want)
		}
	})
}

func TestQueueFIFO(t *testing.T) {
	const d = 2
	ctx := context.Background()
	key := func(v float64) []float64 { return []float64{v, -v} }
	cat := func(vs ...float64) []float64 {
		var x []float64
		for _, v := range vs {
			x = append(x, key(v)...)
		}
		return x
	}
	for _, counts := range [][]int{{3}, {1, 2}, {0, 2, 1}} {
		queues := make([]*Queue[float64], len(counts))
		off := offsets(counts)
		err := runRanks(len(counts), func(r int, coll Collective) error {
			m := MoCo[float64]{Queue: NewQueue[float64](6, d, 7)}
			queues[r] = m.Queue
			for step := 0; step < 3; step++ { // 9 keys through a queue of 6
				batch := cat(float64(10*step+1), float64(10*step+2), float64(10*step+3))
				if err := m.Enqueue(ctx, coll, rows(batch, off[r], off[r+1], d), d, counts); err != nil {
					return err
				}
				if m.Queue.Ptr() != (3*(step+1))%6 {
					t.Errorf("counts %v step %d: pointer %d", counts, step, m.Queue.Ptr())
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// Step 2 wrapped around and overwrote the oldest keys (step 0).
		want := cat(21, 22, 23, 11, 12, 13)
		for r, q := range queues {
			if !equalSlices(q.Data(), want) {
				t.Errorf("counts %v rank %d: queue %v, want %v", counts, r, q.Data(), want)
			}
		}
	}

	// A queue size that is not a multiple of B is refused, and the queue
	// is left unchanged.
	m := MoCo[float64]{Queue: NewQueue[float64](7, d, 7)}
	before := append([]float64(nil), m.Queue.Data()...)
	err := m.Enqueue(ctx, Single{}, cat(1, 2, 3), d, []int{3})
	if err == nil || !strings.Contains(err.Error(), "multiple") {
		t.Errorf("queue 7, batch 3: error %v, want a not-a-multiple error", err)
	}
	if !equalSlices(m.Queue.Data(), before) || m.Queue.Ptr() != 0 {
		t.Error("a refused Enqueue changed the queue")
	}
}

func TestQueueNewAndRestore(t *testing.T) {
	a, b := NewQueue[float32](16, 8, 3), NewQueue[float32](16, 8, 3)
	if !equalSlices(a.Data(), b.Data()) {
		t.Error("the same seed gave different queues")
	}
	if equalSlices(a.Data(), NewQueue[float32](16, 8, 4).Data()) {
		t.Error("different seeds gave the same queue")
	}
	for i := 0; i < a.Size(); i++ {
		var n float64
		for _, x := range a.Data()[i*8 : i*8+8] {
			n += float64(x) * float64(x)
		}
		if math.Abs(n-1) > 1e-6 {
			t.Errorf("key %d has squared norm %v", i, n)
		}
	}
	c := NewQueue[float32](16, 8, 9)
	if err := c.Restore(a.Data(), 5); err != nil || c.Ptr() != 5 || !equalSlices(c.Data(), a.Data()) {
		t.Errorf("Restore: err %v, pointer %d", err, c.Ptr())
	}
	for _, tc := range []struct {
		data []float32
		ptr  int
	}{{a.Data()[:8], 0}, {a.Data(), 16}, {a.Data(), -1}} {
		if err := c.Restore(tc.data, tc.ptr); err == nil {
			t.Errorf("Restore(%d values, %d) accepted", len(tc.data), tc.ptr)
		}
	}
}

func TestMomentumUpdate(t *testing.T) {
	k := []float64{1, 2, 3}
	MomentumUpdate(k, []float64{3, 2, 1}, 0.75)
	if want := []float64{1.5, 2, 2.5}; !equalSlices(k, want) {
		t.Errorf("MomentumUpdate: %v, want %v", k, want)
	}
	MomentumUpdate(k, []float64{0, 0, 0}, 1)
	if want := []float64{1.5, 2, 2.5}; !equalSlices(k, want) {
		t.Errorf("m = 1 changed the key encoder: %v", k)
	}
}

func TestInvalidInputs(t *testing.T) {
	ctx := context.Background()
	const d = 2
	ok := func() CLIPInput[float64] {
		return CLIPInput[float64]{U: make([]float64, 4), V: make([]float64, 4), D: d, Counts: []int{2}, Scale: 1,
			DU: make([]float64, 4), DV: make([]float64, 4)}
	}
	if _, err := (&CLIP[float64]{}).Compute(ctx, Single{}, ok()); err != nil {
		t.Fatalf("valid input refused: %v", err)
	}
	for _, tc := range []struct {
		name string
		c    CLIP[float64]
		edit func(*CLIPInput[float64])
	}{
		{"counts for two ranks", CLIP[float64]{}, func(in *CLIPInput[float64]) { in.Counts = []int{1, 1} }},
		{"empty batch", CLIP[float64]{}, func(in *CLIPInput[float64]) { in.Counts = []int{0}; in.U, in.V, in.DU, in.DV = nil, nil, nil, nil }},
		{"negative count", CLIP[float64]{}, func(in *CLIPInput[float64]) { in.Counts = []int{-2} }},
		{"short U", CLIP[float64]{}, func(in *CLIPInput[float64]) { in.U = in.U[:3] }},
		{"short DV", CLIP[float64]{}, func(in *CLIPInput[float64]) { in.DV = in.DV[:2] }},
		{"zero dimension", CLIP[float64]{}, func(in *CLIPInput[float64]) { in.D = 0 }},
		{"NaN scale", CLIP[float64]{}, func(in *CLIPInput[float64]) { in.Scale = math.NaN() }},
		{"infinite scale", CLIP[float64]{}, func(in *CLIPInput[float64]) { in.Scale = math.Inf(1) }},
		{"negative chunk", CLIP[float64]{Chunk: -1}, func(in *CLIPInput[float64]) {}},
		{"masking without ids", CLIP[float64]{MaskFalseNegatives: true}, func(in *CLIPInput[float64]) {}},
	} {
		in := ok()
		tc.edit(&in)
		if _, err := tc.c.Compute(ctx, Single{}, in); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, err := (&NTXent[float64]{}).Compute(ctx, Single{}, NTXentInput[float64]{Z1: make([]float64, 4), Z2: make([]float64, 3),
		D: d, Counts: []int{2}, Scale: 1, DZ1: make([]float64, 4), DZ2: make([]float64, 4)}); err == nil {
		t.Error("NT-Xent: short Z2 accepted")
	}
	m := MoCo[float64]{Queue: NewQueue[float64](4, d, 1), Symmetric: true}
	if _, err := m.Compute(ctx, Single{}, MoCoInput[float64]{Q1: make([]float64, 4), K2: make([]float64, 4), D: d,
		Counts: []int{2}, Scale: 1, DQ1: make([]float64, 4)}); err == nil {
		t.Error("symmetric MoCo without Q2, K1 accepted")
	}
	if _, err := (&MoCo[float64]{}).Compute(ctx, Single{}, MoCoInput[float64]{}); err == nil {
		t.Error("MoCo without a queue accepted")
	}
	if err := m.Enqueue(ctx, Single{}, make([]float64, 6), 3, []int{2}); err == nil {
		t.Error("Enqueue with the wrong key dimension accepted")
	}
}

// A cancelled context or a failing collective stops every objective with
// an error that wraps the cause.
func TestCancellationAndCollectiveErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	in := CLIPInput[float64]{U: make([]float64, 4), V: make([]float64, 4), D: 2, Counts: []int{2}, Scale: 1,
		DU: make([]float64, 4), DV: make([]float64, 4)}
	if _, err := (&CLIP[float64]{}).Compute(ctx, Single{}, in); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled CLIP: %v", err)
	}
	boom := errors.New("link down")
	fc := failColl{err: boom}
	if _, err := (&CLIP[float64]{}).Compute(context.Background(), fc, in); !errors.Is(err, boom) {
		t.Errorf("CLIP over a failing collective: %v", err)
	}
	nin := NTXentInput[float64]{Z1: make([]float64, 4), Z2: make([]float64, 4), D: 2, Counts: []int{2}, Scale: 1,
		DZ1: make([]float64, 4), DZ2: make([]float64, 4)}
	if _, err := (&NTXent[float64]{}).Compute(context.Background(), fc, nin); !errors.Is(err, boom) {
		t.Errorf("NT-Xent over a failing collective: %v", err)
	}
	m := MoCo[float64]{Queue: NewQueue[float64](4, 2, 1)}
	if err := m.Enqueue(context.Background(), fc, make([]float64, 4), 2, []int{2}); !errors.Is(err, boom) {
		t.Errorf("Enqueue over a failing collective: %v", err)
	}
	// A rank whose peers never arrive is released by its deadline.
	err := runRanks(1, func(r int, coll Collective) error {
		hub := newMemHub(2) // a peer that never comes
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		_, err := (&CLIP[float64]{}).Compute(ctx, memColl{hub: hub, rank: 0}, CLIPInput[float64]{U: make([]float64, 4),
			V: make([]float64, 4), D: 2, Counts: []int{2, 2}, Scale: 1, DU: make([]float64, 4), DV: make([]float64, 4)})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("CLIP without peers: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

type failColl struct{ err error }

func (failColl) Rank() int { return 0 }
func (failColl) Size() int { return 1 }
func (f failColl) AllGather(context.Context, []byte, []byte, []int) error {
	return f.err
}

package contrastive

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"unsafe"
)

// benchCLIPGlobal runs CLIP steps of a global batch B split over K
// in-memory ranks (d, Chunk as given, float32) and reports, per rank, the
// bytes allocated by the first (cold) step, which sizes every work buffer,
// next to the bound (b+B)·d·… of the streaming form and the B² logits a
// materialised similarity matrix would need.
func benchCLIPGlobal(b *testing.B, B, K, d, chunk int) {
	_, ins := clipInputs(B, K, d)
	objs := make([]CLIP[float32], K)
	for r := range objs {
		objs[r].Chunk = chunk
	}
	step := func() {
		if err := runRanks(K, func(r int, coll Collective) error {
			_, err := objs[r].Compute(context.Background(), coll, ins[r])
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := range b.N {
		step()
		if i == 0 {
			runtime.ReadMemStats(&after)
		}
	}
	b.StopTimer()
	bl := B / K
	var f float32
	sz := int(unsafe.Sizeof(f))
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(K), "cold-B/rank")
	// Work buffers of the streaming form: gathered U, V (2·B·d), the tile
	// (b·Chunk), the statistics (b×2 local, 2×b×2 accumulators, b
	// diagonal and B×2 gathered float64s).
	bound := (2*B*d+bl*min(chunk, B))*sz + (7*bl+2*B)*8
	b.ReportMetric(float64(bound), "bound-B/rank")
	b.ReportMetric(float64(B)*float64(B)*float64(sz), "S-matrix-B")
	b.ReportMetric(float64(B)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkCLIPGlobal65536 is the memory demonstration at CLIP scale: a
// global batch of 65,536 pairs (d = 64) on 4 in-memory ranks of 16,384
// rows, float32. A materialised 65,536² logit matrix would take 16 GiB;
// each rank holds the gathered U and V (2·B·d floats, 32 MiB) and one
// b×Chunk tile (64 MiB at Chunk 1024).
//
// "buffers" stops each rank right after the gathers (every work buffer is
// sized before the first chunk) and reports the bytes allocated per rank;
// it takes seconds. "step" runs whole steps: 6·b·B·d multiply-adds and
// 6·b·B exponentials per rank, minutes even on an idle machine; run it
// alone with -benchtime=1x.
func BenchmarkCLIPGlobal65536(b *testing.B) {
	b.Run("buffers", func(b *testing.B) { benchCLIPBuffers(b, 65536, 4, 64, DefaultChunk) })
	b.Run("step", func(b *testing.B) { benchCLIPGlobal(b, 65536, 4, 64, DefaultChunk) })
}

// BenchmarkCLIPGlobal4096 is the same at a size whose steps take seconds.
func BenchmarkCLIPGlobal4096(b *testing.B) {
	b.Run("buffers", func(b *testing.B) { benchCLIPBuffers(b, 4096, 4, 64, DefaultChunk) })
	b.Run("step", func(b *testing.B) { benchCLIPGlobal(b, 4096, 4, 64, DefaultChunk) })
}

// stopAfter passes n all-gathers to inner, then cancels the step.
type stopAfter struct {
	Collective
	n      *int
	cancel context.CancelFunc
}

func (s stopAfter) AllGather(ctx context.Context, send, recv []byte, counts []int) error {
	err := s.Collective.AllGather(ctx, send, recv, counts)
	if *s.n--; *s.n == 0 {
		s.cancel()
	}
	return err
}

// benchCLIPBuffers measures the bytes a rank allocates for a CLIP step of
// global batch B, stopping every rank once U and V are gathered.
func benchCLIPBuffers(b *testing.B, B, K, d, chunk int) {
	_, ins := clipInputs(B, K, d)
	var total uint64
	for range b.N {
		objs := make([]CLIP[float32], K)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		err := runRanks(K, func(r int, coll Collective) error {
			objs[r].Chunk = chunk
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			n := 2 // the gathers of U and V
			_, err := objs[r].Compute(ctx, stopAfter{coll, &n, cancel}, ins[r])
			if !errors.Is(err, context.Canceled) {
				return fmt.Errorf("stopped step: %v", err)
			}
			return nil
		})
		runtime.ReadMemStats(&after)
		if err != nil {
			b.Fatal(err)
		}
		total += after.TotalAlloc - before.TotalAlloc
	}
	bl := (B + K - 1) / K
	b.ReportMetric(float64(total)/float64(b.N*K), "alloc-B/rank")
	b.ReportMetric(float64((2*B*d+bl*min(chunk, B))*4+(7*bl+2*B)*8), "bound-B/rank")
	b.ReportMetric(float64(B)*float64(B)*4, "S-matrix-B")
}

// clipInputs splits a random float32 global batch over K ranks.
func clipInputs(B, K, d int) ([]int, []CLIPInput[float32]) {
	rng := rand.New(rand.NewPCG(51, uint64(B)))
	counts := make([]int, K)
	for r := range counts {
		counts[r] = B / K
		if r < B%K {
			counts[r]++
		}
	}
	off := offsets(counts)
	u := conv[float32](unitRows(rng, B, d))
	v := conv[float32](unitRows(rng, B, d))
	ins := make([]CLIPInput[float32], K)
	for r := range K {
		n := counts[r]
		ins[r] = CLIPInput[float32]{U: rows(u, off[r], off[r+1], d), V: rows(v, off[r], off[r+1], d), D: d,
			Counts: counts, Scale: 1 / 0.07, DU: make([]float32, n*d), DV: make([]float32, n*d)}
	}
	return counts, ins
}

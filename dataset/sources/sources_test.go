package sources_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/infonce/infonce/dataset"
	"github.com/infonce/infonce/dataset/rlds"
	_ "github.com/infonce/infonce/dataset/sources"
	"github.com/infonce/infonce/dataset/tfrecord"
)

func pngOf(t testing.TB, v uint8) []byte {
	return pngSized(t, v, 6, 5)
}

func pngSized(t testing.TB, v uint8, w, h int) []byte {
	im := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range w * h {
		im.Set(i%w, i/w, color.RGBA{v, uint8(i), 255 - v, 255})
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, im); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fixtures writes one small data set of every kind and returns their specs.
func fixtures(t testing.TB) []string {
	dir := t.TempDir()
	// folder: 3 classes × 4 images.
	for c, class := range []string{"ant", "bee", "cat"} {
		os.MkdirAll(filepath.Join(dir, "folder", class), 0o755)
		for i := range 4 {
			os.WriteFile(filepath.Join(dir, "folder", class, fmt.Sprintf("%d.png", i)), pngOf(t, uint8(40*c+i)), 0o644)
		}
	}
	// csv: 12 rows over the same images.
	m := "filepath\ttitle\n"
	for i := range 12 {
		m += fmt.Sprintf("folder/%s/%d.png\tcaption %d\n", []string{"ant", "bee", "cat"}[i%3], i%4, i)
	}
	os.WriteFile(filepath.Join(dir, "m.tsv"), []byte(m), 0o644)
	// wds: 3 shards of 4 samples.
	for s := range 3 {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for i := range 4 {
			for _, mem := range []struct {
				ext  string
				data []byte
			}{{"png", pngOf(t, uint8(s*4+i))}, {"txt", []byte(fmt.Sprintf("sample %d", s*4+i))}} {
				tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("%04d.%s", s*4+i, mem.ext), Mode: 0o644, Size: int64(len(mem.data))})
				tw.Write(mem.data)
			}
		}
		tw.Close()
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("w-%02d.tar", s)), buf.Bytes(), 0o644)
	}
	// rlds: 2 shards, episodes of 3, 5 and 4 steps.
	rd := filepath.Join(dir, "rlds")
	os.MkdirAll(rd, 0o755)
	os.WriteFile(filepath.Join(rd, "features.json"), rlds.FeaturesJSON(rlds.Layout{ImageH: 5, ImageW: 6, ImageC: 3, ImageFormat: "png", Action: 3, Instruction: true}), 0o644)
	e := 0
	for s, lens := range [][]int{{3, 5}, {4}} {
		var buf bytes.Buffer
		w := tfrecord.NewWriter(&buf)
		for _, T := range lens {
			var steps []rlds.Step
			for st := range T {
				steps = append(steps, rlds.Step{Image: pngOf(t, uint8(e*10+st)), Instruction: "open the drawer", Action: []float32{float32(e), float32(st), 1}})
			}
			w.Write(rlds.EpisodeExample(steps).Marshal())
			e++
		}
		os.WriteFile(filepath.Join(rd, fmt.Sprintf("toy-train.tfrecord-%05d-of-00002", s)), buf.Bytes(), 0o644)
	}
	return []string{
		"folder:" + filepath.Join(dir, "folder"),
		"csv:" + filepath.Join(dir, "m.tsv"),
		"wds:" + filepath.Join(dir, "w-{00..02}.tar"),
		"rlds:" + rd,
		"synthetic:12",
	}
}

// digest is what a test compares of a sample.
func digest(s *dataset.Sample) string {
	return fmt.Sprintf("%d %s %x %q %d %v %d/%d", s.Index, s.Key, s.Image.Pix, s.Text, s.Label, s.Action, s.Step, s.EpisodeLen)
}

// TestWorkersIndependent reads the batches of two epochs with K = 1, 2 and
// 3 ranks, each rank reading its rows with goroutines, and checks that the
// global batches are the same samples, whatever K.
func TestWorkersIndependent(t *testing.T) {
	ctx := context.Background()
	for _, spec := range fixtures(t) {
		src, err := dataset.Open(spec, dataset.OpenOptions{Seed: 5})
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		N := src.Len()
		if N != 12 {
			t.Fatalf("%s: %d samples, want 12", spec, N)
		}
		const B = 6
		var ref []string
		for K := 1; K <= 3; K++ {
			sampler := dataset.Sampler{Seed: 9, N: N, B: B}
			var got []string
			var idx []int
			for step := range int64(4) {
				_, idx = sampler.Batch(step, idx)
				batch := make([]string, B)
				var wg sync.WaitGroup
				errs := make([]error, B)
				for k := range K {
					lo, hi := dataset.Shard(B, K, k)
					for r := lo; r < hi; r++ {
						wg.Go(func() {
							var s dataset.Sample
							if errs[r] = src.Sample(ctx, idx[r], &s); errs[r] == nil {
								for _, f := range src.Fields() {
									if !s.Has(f) {
										errs[r] = fmt.Errorf("sample %d lacks %s", idx[r], f)
									}
								}
								batch[r] = digest(&s)
							}
						})
					}
				}
				wg.Wait()
				if err := errors.Join(errs...); err != nil {
					t.Fatalf("%s, K=%d: %v", spec, K, err)
				}
				got = append(got, batch...)
			}
			if K == 1 {
				ref = got
			} else if !slices.Equal(got, ref) {
				t.Fatalf("%s: the batches of K=%d differ from K=1", spec, K)
			}
		}
		// Every sample was seen once per epoch (two epochs of 2 batches).
		seen := map[string]int{}
		for _, d := range ref {
			seen[d]++
		}
		if len(seen) != N {
			t.Errorf("%s: %d distinct samples in two epochs, want %d", spec, len(seen), N)
		}
	}
}

func TestOpenAll(t *testing.T) {
	for _, scheme := range []string{"csv", "folder", "rlds", "wds"} {
		if !slices.Contains(dataset.Schemes(), scheme) {
			t.Errorf("scheme %s not registered", scheme)
		}
	}
	for _, spec := range []string{"folder:/nonexistent", "csv:/nonexistent.tsv", "wds:/nonexistent/{0..1}.tar", "rlds:/nonexistent", "wds:"} {
		if _, err := dataset.Open(spec, dataset.OpenOptions{}); err == nil {
			t.Errorf("%s opened", spec)
		}
	}
}

// BenchmarkSample reads every kind of source in a shuffled order (6×5 PNG
// images, so that the access path, not the decoder, dominates); with
// -cpu 1 the samples/s metric is per core.
func BenchmarkSample(b *testing.B) {
	ctx := context.Background()
	for _, spec := range fixtures(b) {
		src, err := dataset.Open(spec, dataset.OpenOptions{})
		if err != nil {
			b.Fatal(err)
		}
		name := spec[:strings.IndexByte(spec, ':')]
		perm := dataset.Permutation(1, 0, src.Len(), nil)
		b.Run(name, func(b *testing.B) {
			var s dataset.Sample
			i := 0
			for b.Loop() {
				if err := src.Sample(ctx, perm[i%len(perm)], &s); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

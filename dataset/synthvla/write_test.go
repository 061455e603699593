package synthvla_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infonce/infonce/dataset"
	_ "github.com/infonce/infonce/dataset/rlds"
	"github.com/infonce/infonce/dataset/synthvla"
	_ "github.com/infonce/infonce/dataset/wds"
)

func generate(t testing.TB, opts synthvla.Options) synthvla.Summary {
	t.Helper()
	if opts.Out == "" {
		opts.Out = t.TempDir()
	}
	s, err := synthvla.Generate(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// open opens a split of a summary through dataset.Open.
func open(t *testing.T, s synthvla.Summary, sp synthvla.Split) dataset.Source {
	t.Helper()
	ss := s.Splits[sp]
	src, err := dataset.Open(ss.Spec, dataset.OpenOptions{Split: ss.OpenSplit, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if src.Len() != ss.Steps {
		t.Fatalf("%s: %d samples, want %d steps", ss.Spec, src.Len(), ss.Steps)
	}
	return src
}

// The readers give back every step as generated: image, instruction,
// action, state, episode, step, episode length and task id (the
// WebDataset metadata's task, the RLDS episode_metadata/task_id); the two
// formats agree, and each writes tasks.json, whose families map the task
// ids to the episodes' families.
func TestRoundTrip(t *testing.T) {
	const seed, size = 21, 48
	opts := synthvla.Options{Episodes: 14, Seed: seed, Size: size, ValFraction: 0.25, EpisodesPerShard: 4}
	opts.Format = "wds"
	w := generate(t, opts)
	opts.Format = "rlds"
	r := generate(t, opts)
	if w.Splits[synthvla.Val].Episodes != 4 || w.Splits[synthvla.Train].Episodes != 10 || w.Splits[synthvla.Train].Shards != 3 {
		t.Fatalf("splits %+v %+v", w.Splits[synthvla.Train], w.Splits[synthvla.Val])
	}
	ctx := context.Background()
	var families []*dataset.TaskFamilies
	for _, s := range []synthvla.Summary{w, r} {
		tf, path, err := dataset.FindTaskFamilies(s.Splits[synthvla.Val].Spec)
		if err != nil || tf == nil {
			t.Fatalf("tasks.json of %s: %v, %v", s.Splits[synthvla.Val].Spec, tf, err)
		}
		if !slices.Equal(tf.Names(), synthvla.Families()) || filepath.Base(path) != dataset.TasksFile {
			t.Fatalf("%s: families %v, want %v", path, tf.Names(), synthvla.Families())
		}
		families = append(families, tf)
	}
	for _, sp := range []synthvla.Split{synthvla.Train, synthvla.Val} {
		ws, rs := open(t, w, sp), open(t, r, sp)
		for _, src := range []dataset.Source{ws, rs} {
			for _, f := range []dataset.Field{dataset.FieldImage, dataset.FieldText, dataset.FieldAction, dataset.FieldState} {
				if !slices.Contains(src.Fields(), f) {
					t.Errorf("%s: fields %v lack %s", src.Name(), src.Fields(), f)
				}
			}
		}
		if !slices.Contains(rs.Fields(), dataset.FieldTask) {
			t.Errorf("%s: fields %v lack %s", rs.Name(), rs.Fields(), dataset.FieldTask)
		}
		i := 0
		for ep := range w.Splits[sp].Episodes {
			e, err := synthvla.NewEpisode(seed, sp, ep, size)
			if err != nil {
				t.Fatal(err)
			}
			for step, f := range e.Frames {
				var a, b dataset.Sample
				if err := ws.Sample(ctx, i, &a); err != nil {
					t.Fatal(err)
				}
				if err := rs.Sample(ctx, i, &b); err != nil {
					t.Fatal(err)
				}
				i++
				p := f.Proprio()
				for _, s := range []*dataset.Sample{&a, &b} {
					if s.Episode != int64(ep) || s.Step != step || s.EpisodeLen != len(e.Frames) {
						t.Fatalf("%s sample %d: episode %d step %d of %d, want %d, %d of %d", sp, i-1, s.Episode, s.Step, s.EpisodeLen, ep, step, len(e.Frames))
					}
					if s.Text != e.Instruction || !slices.Equal(s.Action, f.Action[:]) || !slices.Equal(s.State, p[:]) {
						t.Fatalf("%s sample %d: text %q action %v state %v, want %q %v %v", sp, i-1, s.Text, s.Action, s.State, e.Instruction, f.Action, p)
					}
					if s.Image.H != size || s.Image.W != size || s.Image.C != 3 || !bytes.Equal(s.Image.Pix, f.Image) {
						t.Fatalf("%s sample %d: the image differs from the frame", sp, i-1)
					}
				}
				for _, s := range []*dataset.Sample{&a, &b} {
					if s.Task != e.Task.ID() {
						t.Fatalf("%s sample %d: task %d, want %d", sp, i-1, s.Task, e.Task.ID())
					}
					for _, tf := range families {
						if got := tf.Family(s.Task); got != int(e.Task.Family) {
							t.Fatalf("%s sample %d: family %d of task %d, want %d (%s)", sp, i-1, got, s.Task, e.Task.Family, e.Task.Family)
						}
					}
				}
			}
		}
		if i != ws.Len() {
			t.Fatalf("%s: %d steps generated, %d read", sp, i, ws.Len())
		}
	}
}

// tree hashes every file under dir by its path relative to dir.
func tree(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The same seed gives the same bytes, whatever the number of workers; a
// different seed different ones.
func TestDeterministic(t *testing.T) {
	for _, format := range []string{"wds", "rlds"} {
		t.Run(format, func(t *testing.T) {
			a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
			opts := synthvla.Options{Episodes: 9, Seed: 5, Size: 32, Format: format, EpisodesPerShard: 4, Workers: 1, Out: a}
			generate(t, opts)
			opts.Workers, opts.Out = 3, b
			generate(t, opts)
			opts.Seed, opts.Out = 6, c
			generate(t, opts)
			ta, tb, tc := tree(t, a), tree(t, b), tree(t, c)
			if len(ta) < 4 {
				t.Fatalf("only %d files", len(ta))
			}
			for p, h := range ta {
				if tb[p] != h {
					t.Errorf("%s differs between two runs of one seed", p)
				}
			}
			if len(ta) != len(tb) {
				t.Errorf("%d files, then %d", len(ta), len(tb))
			}
			for p, h := range ta {
				if (strings.HasSuffix(p, ".tar") || strings.Contains(p, ".tfrecord-")) && tc[p] == h {
					t.Errorf("%s equal under another seed", p)
				}
			}
		})
	}
}

// The metadata written with each step: no held-out combination in any
// training scene; one named by every validation episode.
func TestHeldOutWritten(t *testing.T) {
	s := generate(t, synthvla.Options{Episodes: 60, Seed: 8, Size: 16, ValFraction: 0.3, EpisodesPerShard: 100})
	for _, sp := range []synthvla.Split{synthvla.Train, synthvla.Val} {
		f, err := os.Open(filepath.Join(s.Splits[sp].Dir, "shard-000000.tar"))
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(f)
		steps := 0
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(h.Name, ".json") {
				continue
			}
			var m synthvla.Meta
			b, _ := io.ReadAll(tr)
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			steps++
			involved := m.X.HeldOut || m.Y != nil && m.Y.HeldOut
			for _, o := range m.Objects {
				if sp == synthvla.Train && o.HeldOut {
					t.Fatalf("%s: the held-out %s %s in train", h.Name, o.Colour, o.Shape)
				}
			}
			if sp == synthvla.Val && !involved {
				t.Fatalf("%s: a val task without a held-out combination: %s", h.Name, m.Instruction)
			}
			if m.Split != sp || m.Family == "" || m.EpisodeLen < synthvla.MinFrames {
				t.Fatalf("%s: metadata %+v", h.Name, m)
			}
		}
		f.Close()
		if steps != s.Splits[sp].Steps {
			t.Fatalf("%s: %d json members, want %d", sp, steps, s.Splits[sp].Steps)
		}
	}
}

func TestOptionsRefused(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []synthvla.Options{
		{Episodes: 0, Out: dir},
		{Episodes: 3},
		{Episodes: 3, Out: dir, Format: "parquet"},
		{Episodes: 3, Out: dir, ValFraction: 1},
		{Episodes: 3, Out: dir, Size: 4},
	} {
		if _, err := synthvla.Generate(context.Background(), o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	generate(t, synthvla.Options{Episodes: 2, Out: dir, Size: 16})
	if _, err := synthvla.Generate(context.Background(), synthvla.Options{Episodes: 2, Out: dir, Size: 16}); err == nil {
		t.Error("a second run into the same folder was accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := synthvla.Generate(ctx, synthvla.Options{Episodes: 50, Out: t.TempDir(), Size: 16}); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled run returned %v", err)
	}
}

// BenchmarkNewEpisode measures the generation of one episode at 64×64:
// the scene, the controller and the rendering of its frames.
func BenchmarkNewEpisode(b *testing.B) {
	frames := 0
	for i := range b.N {
		e, err := synthvla.NewEpisode(1, synthvla.Train, i, 64)
		if err != nil {
			b.Fatal(err)
		}
		frames += len(e.Frames)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "episodes/s")
	b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkGenerate measures Generate end to end (PNG encoding and
// writing included) at 64×64, in episodes per second.
func BenchmarkGenerate(b *testing.B) {
	for _, format := range []string{"wds", "rlds"} {
		b.Run(format, func(b *testing.B) {
			const n = 200
			for range b.N {
				if _, err := synthvla.Generate(context.Background(), synthvla.Options{Episodes: n, Out: b.TempDir(), Format: format}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "episodes/s")
		})
	}
}

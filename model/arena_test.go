package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/infonce/infonce/gemm"
)

func sameBuf(a, b []float32) bool { return &a[:1][0] == &b[:1][0] }

// TestGradArena walks the arena through a Backward's pattern: buffers
// given back are lent again best fit, foreign slices are ignored, reset
// takes back everything, and a repeated pattern allocates nothing.
func TestGradArena(t *testing.T) {
	var a gradArena[float32]
	x := a.take(100)
	y := a.take(50)
	if len(x) != 100 || len(y) != 50 || sameBuf(x, y) {
		t.Fatalf("two takes gave lengths %d, %d and shared=%v", len(x), len(y), sameBuf(x, y))
	}
	a.give(make([]float32, 10)) // not lent: ignored
	a.give(nil)
	if len(a.free) != 0 || len(a.lent) != 2 {
		t.Fatalf("after foreign gives: %d free, %d lent, want 0 and 2", len(a.free), len(a.lent))
	}
	a.give(x)
	a.give(y)
	if z := a.take(40); !sameBuf(z, y) || len(z) != 40 {
		t.Errorf("take(40) did not reuse the 50-element buffer (best fit)")
	}
	if z := a.take(60); !sameBuf(z, x) {
		t.Errorf("take(60) did not reuse the 100-element buffer")
	}
	if z := a.take(60); sameBuf(z, x) || sameBuf(z, y) {
		t.Errorf("take(60) lent a buffer already lent")
	}
	a.reset()
	if len(a.lent) != 0 || len(a.free) != 3 {
		t.Fatalf("after reset: %d free, %d lent, want 3 and 0", len(a.free), len(a.lent))
	}
	var nilArena *gradArena[float32]
	nilArena.give(x) // a layer without an arena gives to nil
	own := make([]float32, 0, 8)
	if g := gradBuf(nilArena, own, 5); !sameBuf(g, own) || len(g) != 5 {
		t.Errorf("gradBuf without an arena did not use the layer's own buffer")
	}
	step := func() {
		a.reset()
		p := a.take(100)
		q := a.take(50)
		a.give(p)
		r := a.take(80)
		a.give(q)
		a.give(r)
		_ = a.take(30)
	}
	step()
	if n := testing.AllocsPerRun(20, step); n != 0 {
		t.Errorf("%v allocations a repeated step, want 0", n)
	}
}

// dropArenas takes the gradient arena away from a tower's layers, which
// then write ∂L/∂x to buffers of their own.
func dropArenas[T gemm.Float](tw Tower[T]) {
	var none *gradArena[T]
	var units []unit[T]
	var others []arenaUser[T]
	switch t := tw.(type) {
	case *ViT[T]:
		units, others, t.grads = t.units, []arenaUser[T]{t.proj}, nil
		if t.cls != nil {
			others = append(others, t.cls)
		} else {
			others = append(others, t.mean)
		}
	case *Transformer[T]:
		units, others, t.grads = t.units, []arenaUser[T]{t.proj}, nil
		if t.eot != nil {
			others = append(others, t.eot)
		} else {
			others = append(others, t.mean)
		}
	case *CNN[T]:
		units, others, t.grads = t.units, []arenaUser[T]{t.proj, t.pool}, nil
	}
	for _, u := range units {
		useArena(u.Layer, none)
	}
	for _, l := range others {
		l.setArena(none)
	}
}

// TestGradArenaSameGradients trains each encoder tower for three steps
// with and without its gradient arena and requires the same bits of every
// parameter gradient: a buffer lent again while its gradient was still to
// be read would change them.
func TestGradArenaSameGradients(t *testing.T) {
	for name, cfg := range encoderConfigs() {
		var grads [2][]float32
		for k := range grads {
			m, err := New[float32](cfg, 7)
			if err != nil {
				t.Fatal(err)
			}
			if k == 1 {
				dropArenas(m.Image)
				if m.Text != nil {
					dropArenas(m.Text)
				}
			}
			rng := rand.New(rand.NewPCG(2, 3))
			const b = 4 // the rows of textOffsets
			for range 3 {
				x, r := randT[float32](rng, b*cfg.ImageIn), randT[float32](rng, b*cfg.Dim)
				if _, err := m.Image.Forward(Rows(x, b)); err != nil {
					t.Fatal(err)
				}
				if err := m.Image.Backward(r); err != nil {
					t.Fatal(err)
				}
				if m.Text != nil {
					if _, err := m.Text.Forward(Bags[float32](textIDs, textOffsets, b)); err != nil {
						t.Fatal(err)
					}
					if err := m.Text.Backward(r); err != nil {
						t.Fatal(err)
					}
				}
			}
			grads[k] = m.P.G
		}
		for i := range grads[0] {
			if math.Float32bits(grads[0][i]) != math.Float32bits(grads[1][i]) {
				t.Fatalf("%s: gradient %d is %v with the arena, %v without", name, i, grads[0][i], grads[1][i])
			}
		}
	}
}

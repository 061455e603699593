package model

import (
	"fmt"

	"github.com/infonce/infonce/gemm"
)

// TowerCNN is the kind name of the residual convolutional image tower.
const TowerCNN = "cnn"

// CNNConfig shapes a "cnn" image tower.
type CNNConfig struct {
	Width  int `json:"width"`  // channels of the stem and the first stage
	Stages int `json:"stages"` // stage s has Width·2^s channels; each after the first halves H and W
	Blocks int `json:"blocks"` // residual blocks per stage
	Groups int `json:"groups"` // GroupNorm groups; must divide Width (0 means min(8, Width))
}

// groups is the GroupNorm group count of c.
func (c CNNConfig) groups() int {
	if c.Groups > 0 {
		return c.Groups
	}
	return min(8, c.Width)
}

// CNN is a ResNet-style image tower (He et al. 2016) with GroupNorm in place
// of BatchNorm, so that a sample's embedding does not depend on its batch:
//
//	h = act(GN(Conv3×3(x)))                               the stem
//	h = act(GN(Conv3×3(act(GN(Conv3×3_s(h))))) + S(h))    each residual block
//	f = GlobalAvgPool(h),  u = L2Normalize(f W_projᵀ + b_proj),
//
// act = Config.Activation and the convolutions have no bias. The first
// block of each stage after the first has stride s = 2 and doubles the
// channels, and its shortcut S is GN(Conv1×1_s); elsewhere S is the
// identity. Its segments are image.stem.conv,
// image.stem.gn, image.stages.i.j.{conv1, gn1, conv2, gn2[, down.conv,
// down.gn]} and image.proj.
type CNN[T gemm.Float] struct {
	units []unit[T] // the stem, then the blocks
	pool  *GlobalAvgPool[T]
	proj  *Linear[T]
	projG []T
	l2    *L2Normalize[T]
	grads *gradArena[T] // the ∂L/∂x buffers of Backward
	Ready func(g []T)

	features []T
	ready    bool
}

func checkCNN(c Config) []error {
	s, err := c.imageShape()
	if err != nil {
		return []error{err}
	}
	v := c.CNN
	var errs []error
	if v.Width <= 0 || v.Stages <= 0 || v.Blocks <= 0 || v.Groups < 0 {
		errs = append(errs, fmt.Errorf("model: Config.CNN: width %d, stages %d, blocks %d, groups %d: want the first three > 0, groups >= 0", v.Width, v.Stages, v.Blocks, v.Groups))
		return errs
	}
	if v.Stages > 16 || v.Blocks > 1<<10 || v.Width > 1<<16 || v.Width<<(v.Stages-1) > 1<<20 {
		errs = append(errs, fmt.Errorf("model: Config.CNN: width %d, %d stages or %d blocks is out of range", v.Width, v.Stages, v.Blocks))
	}
	if v.Width%v.groups() != 0 {
		errs = append(errs, fmt.Errorf("model: Config.CNN.Groups = %d does not divide Width %d", v.groups(), v.Width))
	}
	if s.Height>>(v.Stages-1) < 1 || s.Width>>(v.Stages-1) < 1 {
		errs = append(errs, fmt.Errorf("model: Config.CNN: %d stages halve a %d×%d image below one pixel", v.Stages, s.Height, s.Width))
	}
	return errs
}

// cnnBlocks calls f for each residual block in order with its name, input
// and output channels, stride and the input's height and width.
func (c Config) cnnBlocks(f func(name string, cin, cout, stride, h, w int)) {
	s, _ := c.imageShape()
	h, w, cin := s.Height, s.Width, c.CNN.Width
	for i := range c.CNN.Stages {
		cout := c.CNN.Width << i
		for j := range c.CNN.Blocks {
			stride := 1
			if i > 0 && j == 0 {
				stride = 2
			}
			f(fmt.Sprintf("image.stages.%d.%d", i, j), cin, cout, stride, h, w)
			h, w, cin = (h-1)/stride+1, (w-1)/stride+1, cout
		}
	}
}

func countCNN(c Config, limit int) (int, bool) {
	s, _ := c.imageShape()
	n := counter{limit: limit}
	n.add(c.CNN.Width, s.Channels*9+2)
	c.cnnBlocks(func(_ string, cin, cout, stride, _, _ int) {
		n.add(cout, cin*9+2)
		n.add(cout, cout*9+2)
		if stride != 1 || cin != cout {
			n.add(cout, cin+2)
		}
	})
	n.add(c.Dim, (c.CNN.Width<<(c.CNN.Stages-1))+1)
	return n.n, n.ok()
}

// conv lays out a convolution's weight (Cout×Cin×k×k). It has no bias, as
// in ResNets: every convolution of the tower is followed by a GroupNorm,
// whose β does the bias's work (and which, with one channel per group,
// would remove a bias exactly).
func (l *layout) conv(name string, cin, cout, k int) {
	l.add(name+".weight", cout*cin*k*k, false, initSpec{initUniform, cin * k * k})
}

func declareCNN(c Config, l *layout) {
	s, _ := c.imageShape()
	l.conv("image.stem.conv", s.Channels, c.CNN.Width, 3)
	l.layerNorm("image.stem.gn", c.CNN.Width)
	c.cnnBlocks(func(name string, cin, cout, stride, _, _ int) {
		l.conv(name+".conv1", cin, cout, 3)
		l.layerNorm(name+".gn1", cout)
		l.conv(name+".conv2", cout, cout, 3)
		l.layerNorm(name+".gn2", cout)
		if stride != 1 || cin != cout {
			l.conv(name+".down.conv", cin, cout, 1)
			l.layerNorm(name+".down.gn", cout)
		}
	})
	l.linear("image.proj", c.CNN.Width<<(c.CNN.Stages-1), c.Dim)
}

func (c *cursor[T]) conv(name string, cin, cout, k, stride, h, w int) *Conv2d[T] {
	wt, dw := c.next(name + ".weight")
	return &Conv2d[T]{Cin: cin, Cout: cout, H: h, W: w, KH: k, KW: k, Stride: stride, Pad: k / 2,
		Weight: wt, DWeight: dw}
}

// groupNorm hands out the gain and bias of the GroupNorm name, with its
// float32 path in float32 (GroupNorm.Fast32).
func (c *cursor[T]) groupNorm(name string, ch, groups, spatial int) *GroupNorm[T] {
	g, dg := c.next(name + ".gain")
	b, db := c.next(name + ".bias")
	return &GroupNorm[T]{C: ch, G: groups, S: spatial, Gain: g, Bias: b, DGain: dg, DBias: db, Fast32: true}
}

func newCNN[T gemm.Float](c Config, cur *cursor[T]) *CNN[T] {
	s, _ := c.imageShape()
	g, act := c.CNN.groups(), c.Activation
	t := &CNN[T]{l2: &L2Normalize[T]{N: c.Dim}}
	from := cur.i
	stem := cur.conv("image.stem.conv", s.Channels, c.CNN.Width, 3, 1, s.Height, s.Width)
	stem.NoInputGrad = true // the input is data
	hw := s.Height * s.Width
	t.units = append(t.units, unit[T]{Sequential[T]{stem, cur.groupNorm("image.stem.gn", c.CNN.Width, g, hw),
		newTowerActivation[T](act, c.CNN.Width*hw)}, cur.gradSpan(from)})
	var last int
	c.cnnBlocks(func(name string, cin, cout, stride, h, w int) {
		from := cur.i
		blk := &BasicBlock[T]{}
		conv1 := cur.conv(name+".conv1", cin, cout, 3, stride, h, w)
		ho, wo := conv1.OutH(), conv1.OutW()
		n := cout * ho * wo
		blk.Main = Sequential[T]{conv1, cur.groupNorm(name+".gn1", cout, g, ho*wo), newTowerActivation[T](act, n),
			cur.conv(name+".conv2", cout, cout, 3, 1, ho, wo), cur.groupNorm(name+".gn2", cout, g, ho*wo)}
		if stride != 1 || cin != cout {
			blk.Shortcut = Sequential[T]{cur.conv(name+".down.conv", cin, cout, 1, stride, h, w), cur.groupNorm(name+".down.gn", cout, g, ho*wo)}
		}
		blk.Act = newTowerActivation[T](act, n)
		t.units = append(t.units, unit[T]{blk, cur.gradSpan(from)})
		last = ho * wo
	})
	cout := c.CNN.Width << (c.CNN.Stages - 1)
	t.pool = &GlobalAvgPool[T]{C: cout, S: last}
	from = cur.i
	t.proj = cur.linear("image.proj", cout, c.Dim)
	t.projG = cur.gradSpan(from)
	t.grads = towerArena(t.units, t.pool, t.proj)
	return t
}

// BasicBlock is the residual block y = act(Main(x) + Shortcut(x)), the
// shortcut being the identity when nil. The sum is written over Main's
// output, so Main's Backward must not read that output (the CNN's Main
// ends with a GroupNorm, whose Backward reads its input).
type BasicBlock[T gemm.Float] struct {
	Main, Shortcut Layer[T]
	Act            Layer[T]

	dx []T
	ew elementwise[T]
	arenaRef[T]
}

func (r *BasicBlock[T]) setArena(a *gradArena[T]) {
	r.grads = a
	useArena(r.Main, a)
	useArena(r.Shortcut, a)
	useArena(r.Act, a)
}

// Forward computes act(Main(x) + Shortcut(x)).
func (r *BasicBlock[T]) Forward(x []T, b int) ([]T, error) {
	m, err := r.Main.Forward(x, b)
	if err != nil {
		return nil, fmt.Errorf("residual block: %w", err)
	}
	s := x
	if r.Shortcut != nil {
		if s, err = r.Shortcut.Forward(x, b); err != nil {
			return nil, fmt.Errorf("residual block: shortcut: %w", err)
		}
	}
	if len(s) != len(m) {
		return nil, fmt.Errorf("model: residual block: branches of %d and %d elements", len(m), len(s))
	}
	// Main(x) + Shortcut(x) goes over Main(x): Main's output is its last
	// GroupNorm's, which nothing reads after this.
	r.ew.run(opSum, m, m, s)
	return r.Act.Forward(m, b)
}

// Backward returns ∂L/∂x = Mainᵀ(g) + Shortcutᵀ(g), g = actᵀ(dy).
func (r *BasicBlock[T]) Backward(dy []T) ([]T, error) {
	g, err := r.Act.Backward(dy)
	if err != nil {
		return nil, fmt.Errorf("residual block: %w", err)
	}
	dm, err := r.Main.Backward(g)
	if err != nil {
		return nil, fmt.Errorf("residual block: %w", err)
	}
	ds := g
	if r.Shortcut != nil {
		if ds, err = r.Shortcut.Backward(g); err != nil {
			return nil, fmt.Errorf("residual block: shortcut: %w", err)
		}
	}
	r.dx = gradBuf(r.grads, r.dx, len(dm))
	r.ew.run(opSum, r.dx, dm, ds)
	// The branches' gradients are consumed now; dy is the caller's.
	for _, c := range [...][]T{dm, ds, g} {
		if !sameBuffer(c, dy) {
			r.grads.give(c)
		}
	}
	return r.dx, nil
}

// Kind implements Tower.
func (t *CNN[T]) Kind() string { return TowerCNN }

// SetGradReady implements Tower.
func (t *CNN[T]) SetGradReady(ready func(g []T)) { t.Ready = ready }

// Features returns the pooled b × channels features of the last Forward.
func (t *CNN[T]) Features() []T { return t.features }

// Forward encodes the in.N images of in.X (N × C·H·W) into N×Dim unit-norm
// embeddings.
func (t *CNN[T]) Forward(in Batch[T]) ([]T, error) {
	t.ready = false
	b := in.N
	h, err := forwardUnits(t.units, in.X, b)
	if err != nil {
		return nil, fmt.Errorf("cnn: %w", err)
	}
	if h, err = t.pool.Forward(h, b); err != nil {
		return nil, fmt.Errorf("cnn: %w", err)
	}
	t.features = h
	if h, err = t.proj.Forward(h, b); err != nil {
		return nil, fmt.Errorf("cnn: projection: %w", err)
	}
	if h, err = t.l2.Forward(h, b); err != nil {
		return nil, fmt.Errorf("cnn: %w", err)
	}
	t.ready = true
	return h, nil
}

// Backward accumulates the gradients of every parameter of the tower.
func (t *CNN[T]) Backward(dEmb []T) error {
	if !t.ready {
		return fmt.Errorf("cnn: %w", errNoForward)
	}
	t.grads.reset()
	g, err := t.l2.Backward(dEmb)
	if err != nil {
		return fmt.Errorf("cnn: %w", err)
	}
	if g, err = t.proj.Backward(g); err != nil {
		return fmt.Errorf("cnn: projection: %w", err)
	}
	notify(t.Ready, t.projG)
	if g, err = t.pool.Backward(g); err != nil {
		return fmt.Errorf("cnn: %w", err)
	}
	if _, err = backwardUnits(t.units, g, t.Ready, t.grads); err != nil {
		return fmt.Errorf("cnn: %w", err)
	}
	return nil
}

func init() {
	registerTower(TowerCNN, towerKind{
		modality: ModalityImage,
		// Every entry sees the Config with the kind's defaults filled in.
		check:   func(c Config) []error { return checkCNN(c.encoderDefaults()) },
		count:   func(c Config, limit int) (int, bool) { return countCNN(c.encoderDefaults(), limit) },
		declare: func(c Config, l *layout) { declareCNN(c.encoderDefaults(), l) },
		build32: func(c Config, cur *cursor[float32]) Tower[float32] { return newCNN(c.encoderDefaults(), cur) },
		build64: func(c Config, cur *cursor[float64]) Tower[float64] { return newCNN(c.encoderDefaults(), cur) },
	})
}

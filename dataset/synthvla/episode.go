package synthvla

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Split names a split of the data set.
type Split string

// The splits: validation episodes involve a HeldOut combination, training
// episodes never show one.
const (
	Train Split = "train"
	Val   Split = "val"
)

func (s Split) word() uint64 {
	if s == Val {
		return 2
	}
	return 1
}

// Episode lengths, in frames.
const (
	MinFrames = 10
	MaxFrames = 40
)

// Frame is one step of an episode: the scene, its image, and the action
// taken from it.
type Frame struct {
	State  State
	Image  []byte // S×S×3 RGB, row-major (HWC)
	Action Action
}

// Proprio is the hand's state at the frame: (x, y, z, yaw, aperture).
func (f *Frame) Proprio() [5]float32 {
	g := f.State.G
	return [5]float32{float32(g.X), float32(g.Y), float32(g.Z), float32(g.Yaw), float32(g.Aperture)}
}

// Episode is one generated episode.
type Episode struct {
	Split       Split
	Index       int
	Task        Task
	Instruction string
	// XI and YI are the indices of the task's objects (YI −1 when the
	// family has no reference object).
	XI, YI int
	Look   Look
	Size   int
	Frames []Frame
	// Scene is the index of the episode's scene and Variants the number of
	// episodes written per scene (1: every episode its own scene, and the
	// metadata names none); see NewSceneEpisode.
	Scene, Variants int
}

// Initial is the scene at the first frame; Final at the last.
func (e *Episode) Initial() State { return e.Frames[0].State }

// Final is the scene at the last frame.
func (e *Episode) Final() State { return e.Frames[len(e.Frames)-1].State }

// ErrController is returned when the scripted controller leaves a scene
// that does not satisfy its instruction: a bug, never expected.
var ErrController = errors.New("synthvla: the controller did not complete the task")

// maxAttempts bounds the scenes drawn for one episode before giving up.
const maxAttempts = 500

// NewEpisode generates episode index of split sp from seed: a pure
// function of (seed, sp, index) and the image side size. It draws a task
// family, uniformly, then 2 to 5 objects of distinct kinds, their places, the hand's
// start and the look, runs the controller on the scene (drawing again when
// the plan does not fit the table, would sweep through another object, or
// takes more than MaxFrames frames), and renders the frames.
func NewEpisode(seed uint64, sp Split, index, size int) (*Episode, error) {
	if size < 8 {
		return nil, fmt.Errorf("synthvla: image side %d: want at least 8", size)
	}
	e, err := drawEpisode(seed, sp, index)
	if err != nil {
		return nil, err
	}
	e.render(size)
	return e, nil
}

// drawEpisode is NewEpisode without the images.
func drawEpisode(seed uint64, sp Split, index int) (*Episode, error) {
	r := newRNG(seed, sp.word(), uint64(index))
	f := Family(r.intn(NumFamilies))
	for range maxAttempts {
		e, ok := attempt(r, sp, f)
		if !ok {
			continue
		}
		e.Index, e.Scene, e.Variants = index, index, 1
		if !e.Task.Holds(e.Initial(), e.Final(), e.XI, e.YI) {
			return nil, fmt.Errorf("%w: %s episode %d (seed %d): %s", ErrController, sp, index, seed, e.Task)
		}
		e.Instruction = e.Task.Instruction(r)
		e.Look = sampleLook(r)
		return e, nil
	}
	return nil, fmt.Errorf("synthvla: %s episode %d (seed %d): no scene fits after %d draws", sp, index, seed, maxAttempts)
}

// render draws the frames' images at side size.
func (e *Episode) render(size int) {
	e.Size = size
	rd := newRenderer(size, e.Look, e.Frames[0].State.Objects)
	for i := range e.Frames {
		f := &e.Frames[i]
		f.Image = make([]byte, 3*size*size)
		rd.render(&f.State, f.Image)
	}
}

// kindsFor draws n distinct kinds for a scene of family f: index 0 is X,
// index 1 is Y. Training scenes avoid HeldOut; validation scenes make X or
// Y (Y only when the family has one) a HeldOut kind that fits the role.
func kindsFor(r *rng, sp Split, f Family, n int) []Kind {
	ks := make([]Kind, n)
	fixed := -1 // the role given a held-out kind
	if sp == Val {
		fixed = 0
		if f.HasY() && r.coin(0.5) {
			fixed = 1
		}
		var pool []Kind
		for _, h := range HeldOut {
			if fixed == 1 || f != Rotate || h.Shape.Period() > 0 {
				pool = append(pool, h)
			}
		}
		ks[fixed] = pool[r.intn(len(pool))]
	}
	for i := range n {
		if i == fixed {
			continue
		}
		for {
			k := KindOf(r.intn(NumKinds))
			switch {
			case slices.Contains(ks[:i], k) || fixed > i && ks[fixed] == k:
				continue // kinds are distinct, so that a phrase names one object
			case sp == Train && IsHeldOut(k):
				continue
			case i == 0 && f == Rotate && k.Shape.Period() == 0:
				continue // a turn of a circle does not show
			}
			ks[i] = k
			break
		}
	}
	return ks
}

// attempt draws one scene and runs the controller; false when the scene
// is rejected.
func attempt(r *rng, sp Split, f Family) (*Episode, bool) {
	n := 2 + r.intn(4)
	ks := kindsFor(r, sp, f, n)
	// Places: uniform in the table's middle, footprints apart.
	objs := make([]Object, 0, n)
	for _, k := range ks {
		placed := false
		for range 50 {
			o := Object{Kind: k, R: r.between(MinRadius, MaxRadius)}
			o.X, o.Y = r.between(0.12, 0.88), r.between(0.12, 0.88)
			o.Yaw = r.between(0, 2*math.Pi)
			if !slices.ContainsFunc(objs, func(p Object) bool { return math.Hypot(p.X-o.X, p.Y-o.Y) < p.R+o.R+0.05 }) {
				objs = append(objs, o)
				placed = true
				break
			}
		}
		if !placed {
			return nil, false
		}
	}
	// The objects in a random order, so that X is not always drawn first.
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := r.intn(i + 1)
		perm[i], perm[j] = perm[j], perm[i]
	}
	s := State{Objects: make([]Object, n)}
	for i, p := range perm {
		s.Objects[p] = objs[i]
	}
	xi, yi := perm[0], -1
	if f.HasY() {
		yi = perm[1]
	}
	t := Task{Family: f, X: ks[0]}
	if yi >= 0 {
		t.Y = ks[1]
	}
	s.G = Gripper{X: r.between(0.1, 0.9), Y: r.between(0.1, 0.9), Z: ZTravel, Yaw: r.between(-0.3, 0.3), Aperture: 1, Held: -1}
	return runTask(r, sp, s, t, xi, yi)
}

// runTask draws the target of task t on scene s (which it changes), X and
// Y being objects xi and yi, checks that the plan fits, and runs the
// controller: the episode's frames, or false when the task is rejected on
// this scene.
func runTask(r *rng, sp Split, s State, t Task, xi, yi int) (*Episode, bool) {
	f := t.Family
	X := s.Objects[xi]
	var tx, ty float64
	if yi >= 0 {
		Y := s.Objects[yi]
		gap := r.between(0.02, 0.06)
		across := r.between(-0.3, 0.3) * min(X.R, Y.R)
		d := Y.R + X.R + gap
		switch f {
		case PushLeft:
			tx, ty = Y.X-d, Y.Y+across
		case PushRight:
			tx, ty = Y.X+d, Y.Y+across
		case PushBehind:
			tx, ty = Y.X+across, Y.Y-d
		case PushFront:
			tx, ty = Y.X+across, Y.Y+d
		case PlaceOn:
			a, m := r.between(0, 2*math.Pi), r.between(0, 0.3)*Y.R
			tx, ty = Y.X+m*math.Cos(a), Y.Y+m*math.Sin(a)
		case Stack:
			tx, ty = Y.X, Y.Y
		}
	}
	if f <= PushFront && !pushFits(s, xi, tx, ty) {
		return nil, false
	}
	if t.Holds(s, s, xi, yi) {
		return nil, false // already done
	}
	c := Controller{V: r.between(0.07, VMaxXY), VZ: r.between(0.07, VMaxZ), VYaw: VMaxYaw}
	c.Plan = Plan(t, s, xi, yi, tx, ty)
	for _, w := range c.Plan {
		if w.X < 0 || w.X > 1 || w.Y < 0 || w.Y > 1 {
			return nil, false
		}
	}
	e := &Episode{Split: sp, Task: t, XI: xi, YI: yi}
	for {
		a, more := c.Act(s.G)
		e.Frames = append(e.Frames, Frame{State: s.Clone(), Action: a})
		if !more {
			break
		}
		if len(e.Frames) >= MaxFrames {
			return nil, false
		}
		s.Apply(a)
	}
	// Short episodes end with still frames.
	for len(e.Frames) < MinFrames {
		last := e.Frames[len(e.Frames)-1]
		s.Apply(last.Action)
		e.Frames = append(e.Frames, Frame{State: s.Clone(), Action: last.Action})
	}
	return e, true
}

// pushFits reports whether pushing object xi of s to (tx, ty) keeps X and
// the hand on the table, moves X far enough to see, and sweeps neither X
// nor the hand through another object.
func pushFits(s State, xi int, tx, ty float64) bool {
	X := s.Objects[xi]
	in := func(x, y, m float64) bool { return x >= m && x <= 1-m && y >= m && y <= 1-m }
	dx, dy := tx-X.X, ty-X.Y
	n := math.Hypot(dx, dy)
	if n < 0.08 || !in(tx, ty, X.R+0.02) {
		return false
	}
	dx, dy = dx/n, dy/n
	back, reach := X.R+FistRadius+0.02, X.R+FistRadius
	sx, sy := X.X-dx*back, X.Y-dy*back
	ex, ey := tx-dx*reach, ty-dy*reach
	if !in(sx, sy, 0.02) || !in(ex, ey, 0.02) {
		return false
	}
	for i, o := range s.Objects {
		if i == xi {
			continue
		}
		if segDist(o.X, o.Y, X.X, X.Y, tx, ty) < X.R+o.R+0.01 || segDist(o.X, o.Y, sx, sy, ex, ey) < FistRadius+o.R+0.01 {
			return false
		}
	}
	return true
}

// segDist is the distance from point (px, py) to the segment (ax, ay)–(bx, by).
func segDist(px, py, ax, ay, bx, by float64) float64 {
	ex, ey := bx-ax, by-ay
	t := 0.0
	if l := ex*ex + ey*ey; l > 0 {
		t = clamp(((px-ax)*ex+(py-ay)*ey)/l, 0, 1)
	}
	return math.Hypot(px-ax-t*ex, py-ay-t*ey)
}

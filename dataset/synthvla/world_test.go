package synthvla

import (
	"math"
	"slices"
	"testing"
)

// episodes generates n episodes of each split from seed.
func episodes(t testing.TB, seed uint64, n int) []*Episode {
	t.Helper()
	var out []*Episode
	for _, sp := range []Split{Train, Val} {
		for i := range n {
			e, err := NewEpisode(seed, sp, i, 32)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, e)
		}
	}
	return out
}

// The scripted controller completes every family: the last frame satisfies
// the instruction's predicate, the first does not, and replaying the
// recorded actions from the first frame gives every later frame.
func TestControllerCompletesEveryFamily(t *testing.T) {
	n := 150
	if testing.Short() {
		n = 40
	}
	count := make([]int, NumFamilies)
	for _, e := range episodes(t, 11, n) {
		count[e.Task.Family]++
		s0, sT := e.Initial(), e.Final()
		if !e.Task.Holds(s0, sT, e.XI, e.YI) {
			t.Errorf("%s episode %d: %s does not hold at the end", e.Split, e.Index, e.Task)
		}
		if e.Task.Holds(s0, s0, e.XI, e.YI) {
			t.Errorf("%s episode %d: %s holds at the start", e.Split, e.Index, e.Task)
		}
		s := s0.Clone()
		for k := 0; k+1 < len(e.Frames); k++ {
			s.Apply(e.Frames[k].Action)
			if !sameState(s, e.Frames[k+1].State) {
				t.Fatalf("%s episode %d: replaying the actions departs from frame %d", e.Split, e.Index, k+1)
			}
		}
	}
	for f, c := range count {
		if c < n/NumFamilies/2 {
			t.Errorf("family %s: %d of %d episodes", Family(f), c, 2*n)
		}
	}
	t.Logf("episodes per family %v", count)
}

func sameState(a, b State) bool {
	return a.G == b.G && slices.Equal(a.Objects, b.Objects)
}

// Actions are finite and within the controller's bounds, droll and dpitch
// are 0, the gripper command is 0 or 1, and episodes last 10 to 40 frames.
func TestActionsBounded(t *testing.T) {
	for _, e := range episodes(t, 3, 60) {
		if T := len(e.Frames); T < MinFrames || T > MaxFrames {
			t.Errorf("%s episode %d: %d frames", e.Split, e.Index, T)
		}
		for k, f := range e.Frames {
			a := f.Action
			for _, v := range a {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("%s episode %d step %d: action %v", e.Split, e.Index, k, a)
				}
			}
			const eps = 1e-6
			if math.Abs(float64(a[0])) > VMaxXY+eps || math.Abs(float64(a[1])) > VMaxXY+eps || math.Abs(float64(a[2])) > VMaxZ+eps ||
				a[3] != 0 || a[4] != 0 || math.Abs(float64(a[5])) > VMaxYaw+eps || (a[6] != 0 && a[6] != 1) {
				t.Fatalf("%s episode %d step %d: action %v out of bounds", e.Split, e.Index, k, a)
			}
		}
		if last := e.Frames[len(e.Frames)-1].Action; last[0] != 0 || last[1] != 0 || last[2] != 0 || last[5] != 0 {
			t.Errorf("%s episode %d: the last action %v moves", e.Split, e.Index, last)
		}
	}
}

// Training scenes never show a held-out combination; every validation
// episode's instruction names one, as X or Y.
func TestHeldOutSplits(t *testing.T) {
	for _, e := range episodes(t, 5, 200) {
		involved := IsHeldOut(e.Task.X) || e.Task.Family.HasY() && IsHeldOut(e.Task.Y)
		switch e.Split {
		case Train:
			for _, f := range e.Frames {
				for _, o := range f.State.Objects {
					if IsHeldOut(o.Kind) {
						t.Fatalf("train episode %d shows the held-out %s", e.Index, o.Kind)
					}
				}
			}
		case Val:
			if !involved {
				t.Fatalf("val episode %d: %s involves no held-out combination", e.Index, e.Task)
			}
		}
		objs := e.Frames[0].State.Objects
		if len(objs) < 2 || len(objs) > 5 {
			t.Fatalf("%s episode %d: %d objects", e.Split, e.Index, len(objs))
		}
		for i := range objs {
			for j := range i {
				if objs[i].Kind == objs[j].Kind {
					t.Fatalf("%s episode %d: two %s", e.Split, e.Index, objs[i].Kind)
				}
			}
		}
		if e.Frames[0].State.Objects[e.XI].Kind != e.Task.X || e.YI >= 0 && e.Frames[0].State.Objects[e.YI].Kind != e.Task.Y {
			t.Fatalf("%s episode %d: the task's kinds are not its objects'", e.Split, e.Index)
		}
	}
	// Each shape and each colour is held out exactly once.
	var shapes, colours [8]int
	for _, h := range HeldOut {
		shapes[h.Shape]++
		colours[h.Colour]++
	}
	for i := range NumShapes {
		if shapes[i] != 1 {
			t.Errorf("shape %s held out %d times", Shape(i), shapes[i])
		}
	}
	for i := range NumColours {
		if colours[i] != 1 {
			t.Errorf("colour %s held out %d times", Colour(i), colours[i])
		}
	}
}

func TestTaskID(t *testing.T) {
	seen := map[int]bool{}
	for f := range NumFamilies {
		for x := range NumKinds {
			ys := []int{-1}
			if Family(f).HasY() {
				ys = ys[1:]
				for y := range NumKinds {
					ys = append(ys, y)
				}
			}
			for _, y := range ys {
				task := Task{Family: Family(f), X: KindOf(x)}
				if y >= 0 {
					task.Y = KindOf(y)
				}
				id := task.ID()
				if seen[id] || id < 0 || id >= NumTaskIDs {
					t.Fatalf("%s: id %d repeated or out of range", task, id)
				}
				seen[id] = true
				back, err := TaskOf(id)
				if err != nil || back != task {
					t.Fatalf("TaskOf(%d) = %v, %v; want %v", id, back, err, task)
				}
			}
		}
	}
	for _, id := range []int{-1, NumTaskIDs, Task{Family: Point, X: KindOf(3)}.ID() + 1, 0} {
		if _, err := TaskOf(id); err == nil {
			t.Errorf("TaskOf(%d) accepted", id)
		}
	}
	if f, err := ParseFamily("stack"); err != nil || f != Stack {
		t.Errorf("ParseFamily(stack) = %v, %v", f, err)
	}
	if _, err := ParseFamily("juggle"); err == nil {
		t.Error("ParseFamily(juggle) accepted")
	}
}

// Instructions name their objects and vary over the paraphrases of their
// family.
func TestInstructions(t *testing.T) {
	r := newRNG(1)
	for f := range NumFamilies {
		task := Task{Family: Family(f), X: Kind{Star, Red}, Y: Kind{Square, Purple}}
		forms := map[string]bool{}
		for range 200 {
			s := task.Instruction(r)
			if !containsAny(s, "red star") || task.Family.HasY() != (containsAny(s, "purple square", "violet square", "purple block", "violet block")) {
				t.Fatalf("%s: %q does not name its objects", task, s)
			}
			forms[s] = true
		}
		if len(forms) < 5 {
			t.Errorf("%s: only %d paraphrases", task, len(forms))
		}
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		for i := 0; i+len(sub) <= len(s); i++ {
			if s[i:i+len(sub)] == sub {
				return true
			}
		}
	}
	return false
}

// Predicates of hand-made scenes.
func TestHolds(t *testing.T) {
	obj := func(k Kind, x, y, z, yaw float64) Object { return Object{Kind: k, X: x, Y: y, Z: z, R: 0.06, Yaw: yaw} }
	X, Y := Kind{Square, Red}, Kind{Circle, Blue}
	hand := Gripper{Z: ZTravel, Aperture: 1, Held: -1}
	scene := func(x, y Object, g Gripper) State { return State{Objects: []Object{x, y}, G: g} }
	s0 := scene(obj(X, 0.7, 0.5, 0, 0), obj(Y, 0.5, 0.5, 0, 0), hand)
	for _, c := range []struct {
		name string
		f    Family
		s    State
		want bool
	}{
		{"left", PushLeft, scene(obj(X, 0.37, 0.52, 0, 0), obj(Y, 0.5, 0.5, 0, 0), hand), true},
		{"left but touching", PushLeft, scene(obj(X, 0.39, 0.5, 0, 0), obj(Y, 0.5, 0.5, 0, 0), hand), false},
		{"left but far below", PushLeft, scene(obj(X, 0.37, 0.6, 0, 0), obj(Y, 0.5, 0.5, 0, 0), hand), false},
		{"left but Y moved", PushLeft, scene(obj(X, 0.30, 0.5, 0, 0), obj(Y, 0.45, 0.5, 0, 0), hand), false},
		{"right", PushRight, scene(obj(X, 0.63, 0.5, 0, 0), obj(Y, 0.5, 0.5, 0, 0), hand), true},
		{"right, not left", PushLeft, scene(obj(X, 0.63, 0.5, 0, 0), obj(Y, 0.5, 0.5, 0, 0), hand), false},
		{"behind", PushBehind, scene(obj(X, 0.5, 0.37, 0, 0), obj(Y, 0.5, 0.5, 0, 0), hand), true},
		{"front", PushFront, scene(obj(X, 0.5, 0.63, 0, 0), obj(Y, 0.5, 0.5, 0, 0), hand), true},
		{"on", PlaceOn, scene(obj(X, 0.52, 0.5, ObjectHeight, 1), obj(Y, 0.5, 0.5, 0, 0), hand), true},
		{"on, off centre", PlaceOn, scene(obj(X, 0.55, 0.5, ObjectHeight, 1), obj(Y, 0.5, 0.5, 0, 0), hand), false},
		{"on, not stacked", Stack, scene(obj(X, 0.52, 0.5, ObjectHeight, 0), obj(Y, 0.5, 0.5, 0, 0), hand), false},
		{"stacked, turned", Stack, scene(obj(X, 0.5, 0.5, ObjectHeight, math.Pi/4), obj(Y, 0.5, 0.5, 0, 0), hand), false},
		{"stacked", Stack, scene(obj(X, 0.5, 0.5, ObjectHeight, math.Pi/2), obj(Y, 0.5, 0.5, 0, 0), hand), true},
		{"rotated", Rotate, scene(obj(X, 0.7, 0.5, 0, math.Pi/4), obj(Y, 0.5, 0.5, 0, 0), hand), true},
		{"rotated back", Rotate, scene(obj(X, 0.7, 0.5, 0, -math.Pi/4), obj(Y, 0.5, 0.5, 0, 0), hand), false},
		{"pointing", Point, scene(obj(X, 0.7, 0.5, 0, 0), obj(Y, 0.5, 0.5, 0, 0), Gripper{X: 0.71, Y: 0.5, Z: 0.14, Aperture: 1, Held: -1}), true},
		{"pointing too high", Point, scene(obj(X, 0.7, 0.5, 0, 0), obj(Y, 0.5, 0.5, 0, 0), Gripper{X: 0.71, Y: 0.5, Z: ZTravel, Aperture: 1, Held: -1}), false},
		{"lifted", Lift, scene(obj(X, 0.7, 0.5, 0.2, 0), obj(Y, 0.5, 0.5, 0, 0), Gripper{X: 0.7, Y: 0.5, Z: 0.24, Closed: true, Held: 0}), true},
		{"lifted, not held", Lift, scene(obj(X, 0.7, 0.5, 0.2, 0), obj(Y, 0.5, 0.5, 0, 0), hand), false},
	} {
		task := Task{Family: c.f, X: X, Y: Y}
		y := 1
		if !c.f.HasY() {
			y = -1
		}
		if got := task.Holds(s0, c.s, 0, y); got != c.want {
			t.Errorf("%s: %s holds = %v, want %v", c.name, task, got, c.want)
		}
	}
}

// Scenarios of the physics: a grasp needs the hand at the object; a
// release falls onto what is below; a fast fist does not pass through an
// object.
func TestApply(t *testing.T) {
	close1 := Action{6: 1}
	t.Run("grasp and release onto another object", func(t *testing.T) {
		s := State{Objects: []Object{{X: 0.3, Y: 0.3, R: 0.06}, {X: 0.52, Y: 0.3, R: 0.07}},
			G: Gripper{X: 0.3, Y: 0.3, Z: ObjectHeight / 2, Aperture: 1, Held: -1}}
		s.Apply(close1)
		if s.G.Held != 0 || s.G.Aperture != 0.5 {
			t.Fatalf("closing at the object: held %d, aperture %g", s.G.Held, s.G.Aperture)
		}
		s.Apply(Action{0: 0.1, 2: 0.1, 6: 1})
		s.Apply(Action{0: 0.1, 2: -0.1 + ObjectHeight, 6: 1})
		if o := s.Objects[0]; math.Abs(o.X-0.5) > 1e-6 || math.Abs(o.Z-ObjectHeight) > 1e-6 {
			t.Fatalf("carried object at (%g, %g)", o.X, o.Z)
		}
		s.Apply(Action{})
		if s.G.Held != -1 || s.Objects[0].Z != ObjectHeight {
			t.Fatalf("released: held %d, z %g, want on the other object's top", s.G.Held, s.Objects[0].Z)
		}
	})
	t.Run("closing beside an object grasps nothing", func(t *testing.T) {
		s := State{Objects: []Object{{X: 0.3, Y: 0.3, R: 0.06}}, G: Gripper{X: 0.36, Y: 0.3, Z: ObjectHeight / 2, Aperture: 1, Held: -1}}
		s.Apply(close1)
		if s.G.Held != -1 {
			t.Fatal("grasped from beside")
		}
	})
	t.Run("closing high grasps nothing", func(t *testing.T) {
		s := State{Objects: []Object{{X: 0.3, Y: 0.3, R: 0.06}}, G: Gripper{X: 0.3, Y: 0.3, Z: ZTravel, Aperture: 1, Held: -1}}
		s.Apply(close1)
		if s.G.Held != -1 {
			t.Fatal("grasped from above")
		}
	})
	t.Run("a fast fist pushes", func(t *testing.T) {
		s := State{Objects: []Object{{X: 0.5, Y: 0.5, R: 0.055}}, G: Gripper{X: 0.5 - 0.1, Y: 0.5, Z: ZPush, Closed: true, Held: -1}}
		for range 2 {
			s.Apply(Action{0: VMaxXY, 6: 1})
		}
		if o := s.Objects[0]; math.Abs(o.X-(s.G.X+o.R+FistRadius)) > 1e-9 || o.Y != 0.5 {
			t.Fatalf("pushed object at (%g, %g), hand at %g", o.X, o.Y, s.G.X)
		}
	})
	t.Run("an open hand does not push", func(t *testing.T) {
		s := State{Objects: []Object{{X: 0.5, Y: 0.5, R: 0.055}}, G: Gripper{X: 0.45, Y: 0.5, Z: ZPush, Aperture: 1, Held: -1}}
		s.Apply(Action{0: 0.05})
		if s.Objects[0].X != 0.5 {
			t.Fatal("an open hand pushed")
		}
	})
}

// A scenario of the controller's state machine: lifting an object goes
// through its waypoints in order, grasps on the step it closes at the
// object, and holds at the top.
func TestControllerLiftScenario(t *testing.T) {
	s := State{Objects: []Object{{Kind: Kind{Star, Green}, X: 0.5, Y: 0.5, R: 0.06}},
		G: Gripper{X: 0.3, Y: 0.5, Z: ZTravel, Aperture: 1, Held: -1}}
	task := Task{Family: Lift, X: Kind{Star, Green}}
	c := Controller{V: 0.1, VZ: 0.1, VYaw: VMaxYaw, Plan: Plan(task, s, 0, -1, 0, 0)}
	if len(c.Plan) != 4 {
		t.Fatalf("plan of %d waypoints, want 4 (over, down, close, up)", len(c.Plan))
	}
	var phases []int
	s0 := s.Clone()
	for range MaxFrames {
		a, more := c.Act(s.G)
		if !more {
			break
		}
		phases = append(phases, c.Phase())
		s.Apply(a)
	}
	// Over X: 2 steps of 0.1; down from 0.26 to 0.04: 3 steps; close: 2
	// steps (the grasp on the first); up to 0.3: 3 steps; hold: 2.
	want := []int{0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3, 3}
	if !slices.Equal(phases, want) {
		t.Fatalf("phases %v, want %v", phases, want)
	}
	if !task.Holds(s0, s, 0, -1) {
		t.Fatalf("lift does not hold: object z %g, held %d", s.Objects[0].Z, s.G.Held)
	}
}

// Coverage anti-aliasing: a pixel whose centre lies on an edge is half
// covered, and the coverage of a disc sums to its area in pixels.
func TestCoverage(t *testing.T) {
	cv := newCanvas(16)
	// A box whose left edge passes through the centres of column 8.
	cv.fill(layer{f: sdBox(0.25, 0.25), cx: (8.5 / 16) + 0.25, cy: 0.5, scale: 1, br: 0.36}, [3]float64{1, 1, 1}, 1, 0, 1)
	if v := cv.Pix[3*(8*16+8)]; math.Abs(v-0.5) > 1e-9 {
		t.Errorf("coverage of a pixel on the edge %g, want 0.5", v)
	}
	if v, w := cv.Pix[3*(8*16+7)], cv.Pix[3*(8*16+9)]; v != 0 || w != 1 {
		t.Errorf("coverage beside the edge %g and %g, want 0 and 1", v, w)
	}
	cv = newCanvas(64)
	r := 10.3 / 64
	cv.fill(layer{f: sdCircle(r), cx: 0.51, cy: 0.47, scale: 1, br: r}, [3]float64{1, 1, 1}, 1, 0, 1)
	sum := 0.0
	for i := 0; i < len(cv.Pix); i += 3 {
		sum += cv.Pix[i]
	}
	if want := math.Pi * 10.3 * 10.3; math.Abs(sum-want) > 0.01*want {
		t.Errorf("disc coverage %g pixels, want %g", sum, want)
	}
	// Every shape fits its footprint radius and covers a fair part of it.
	for sh := range NumShapes {
		f := shapeSDF(Shape(sh), 1)
		in := 0
		for i := range 200 {
			for j := range 200 {
				x, y := -1.2+2.4*float64(i)/199, -1.2+2.4*float64(j)/199
				if f(x, y) < 0 {
					in++
					if math.Hypot(x, y) > 1 {
						t.Fatalf("%s reaches beyond its radius at (%g, %g)", Shape(sh), x, y)
					}
				}
			}
		}
		if frac := float64(in) / (200 * 200) * 2.4 * 2.4 / math.Pi; frac < 0.25 {
			t.Errorf("%s covers %.2f of its disc", Shape(sh), frac)
		}
	}
}

// TaskOf reads ids from metadata: any int either is refused or names a
// task whose ID is the int.
func FuzzTaskOf(f *testing.F) {
	for _, id := range []int{0, 1, 36, 37, NumTaskIDs - 1, NumTaskIDs, -1, Task{Family: Rotate, X: KindOf(5)}.ID()} {
		f.Add(id)
	}
	f.Fuzz(func(t *testing.T, id int) {
		task, err := TaskOf(id)
		if err != nil {
			return
		}
		if task.ID() != id {
			t.Fatalf("TaskOf(%d) = %s, whose id is %d", id, task, task.ID())
		}
	})
}

// A scenario of a push: the hand closes on its way over the start behind
// X, goes down, and X moves only during the stroke (phase 2), ending left
// of Y.
func TestControllerPushScenario(t *testing.T) {
	X, Y := Object{Kind: Kind{Circle, Red}, X: 0.3, Y: 0.75, R: 0.06}, Object{Kind: Kind{Square, Blue}, X: 0.55, Y: 0.5, R: 0.07}
	s := State{Objects: []Object{X, Y}, G: Gripper{X: 0.8, Y: 0.2, Z: ZTravel, Aperture: 1, Held: -1}}
	task := Task{Family: PushLeft, X: X.Kind, Y: Y.Kind}
	tx, ty := Y.X-Y.R-X.R-0.03, Y.Y
	if !pushFits(s, 0, tx, ty) {
		t.Fatal("the push does not fit")
	}
	c := Controller{V: 0.08, VZ: 0.1, VYaw: VMaxYaw, Plan: Plan(task, s, 0, 1, tx, ty)}
	s0 := s.Clone()
	for range MaxFrames {
		a, more := c.Act(s.G)
		if !more {
			break
		}
		phase := c.Phase()
		before := s.Objects[0]
		s.Apply(a)
		if s.Objects[0] != before && phase != 2 {
			t.Fatalf("X moved in phase %d", phase)
		}
		if phase >= 1 && !s.G.Closed {
			t.Fatalf("the hand is open in phase %d", phase)
		}
	}
	if !c.Done() {
		t.Fatal("the push did not finish in MaxFrames steps")
	}
	if o := s.Objects[0]; math.Hypot(o.X-tx, o.Y-ty) > 1e-6 {
		t.Fatalf("X at (%g, %g), want (%g, %g)", o.X, o.Y, tx, ty)
	}
	if !task.Holds(s0, s, 0, 1) {
		t.Fatal("push-left does not hold")
	}
}

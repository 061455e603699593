package synthvla

import (
	"fmt"
	"math"
	"strings"

	"github.com/infonce/infonce/dataset"
)

// Family is a kind of task.
type Family int

// The task families. X is the object acted on, Y the reference object.
const (
	PushLeft    Family = iota // push X to the left of Y
	PushRight                 // push X to the right of Y
	PushBehind                // push X behind Y (up the image)
	PushFront                 // push X in front of Y (down the image)
	PlaceOn                   // pick X and place it on Y, anywhere on its top
	Stack                     // stack X on Y, centred and turned to match
	Rotate                    // rotate X clockwise by half its period
	Point                     // point at X: hover the open hand over it
	Lift                      // lift X and hold it up
	NumFamilies int    = iota
)

var familyNames = [...]string{"push-left", "push-right", "push-behind", "push-front", "place-on", "stack", "rotate", "point", "lift"}

func (f Family) String() string { return familyNames[f] }

// HasY reports whether tasks of the family name a reference object.
func (f Family) HasY() bool { return f <= Stack }

// ParseFamily is the family named s.
func ParseFamily(s string) (Family, error) {
	for i, n := range familyNames {
		if n == s {
			return Family(i), nil
		}
	}
	return 0, fmt.Errorf("synthvla: unknown task family %q (want one of %s)", s, strings.Join(familyNames[:], ", "))
}

// Families are the names of the task families.
func Families() []string { return append([]string(nil), familyNames[:]...) }

// Task is one exact task: a family, the object acted on and the reference
// object (the zero Kind and HasY false when the family has none).
type Task struct {
	Family Family
	X, Y   Kind
}

// ID is the integer id of the exact task (family, X, Y):
//
//	ID = (family·NumKinds + X.Index())·(NumKinds+1) + (Y.Index()+1 or 0)
//
// so that 0 ≤ ID < NumFamilies·NumKinds·(NumKinds+1), and TaskOf inverts it.
func (t Task) ID() int {
	y := 0
	if t.Family.HasY() {
		y = t.Y.Index() + 1
	}
	return (int(t.Family)*NumKinds+t.X.Index())*(NumKinds+1) + y
}

// NumTaskIDs bounds the task ids.
const NumTaskIDs = NumFamilies * NumKinds * (NumKinds + 1)

// TaskOf is the task of id, the inverse of Task.ID.
func TaskOf(id int) (Task, error) {
	if id < 0 || id >= NumTaskIDs {
		return Task{}, fmt.Errorf("synthvla: task id %d out of range [0, %d)", id, NumTaskIDs)
	}
	y := id % (NumKinds + 1)
	id /= NumKinds + 1
	t := Task{Family: Family(id / NumKinds), X: KindOf(id % NumKinds)}
	if t.Family.HasY() != (y > 0) {
		return Task{}, fmt.Errorf("synthvla: task id of family %s with a reference object mismatch", t.Family)
	}
	if y > 0 {
		t.Y = KindOf(y - 1)
	}
	return t, nil
}

func (t Task) String() string {
	if t.Family.HasY() {
		return fmt.Sprintf("%s(%s, %s)", t.Family, t.X, t.Y)
	}
	return fmt.Sprintf("%s(%s)", t.Family, t.X)
}

// The grammar of instructions: a template of the family, with {X} and {Y}
// replaced by noun phrases "the COLOUR SHAPE" drawn from the synonyms.
var templates = [NumFamilies][]string{
	PushLeft: {
		"push {X} to the left of {Y}", "move {X} left of {Y}", "slide {X} to the left side of {Y}",
		"shove {X} so that it ends up left of {Y}", "nudge {X} over to the left of {Y}",
	},
	PushRight: {
		"push {X} to the right of {Y}", "move {X} right of {Y}", "slide {X} to the right side of {Y}",
		"shove {X} so that it ends up right of {Y}", "nudge {X} over to the right of {Y}",
	},
	PushBehind: {
		"push {X} behind {Y}", "slide {X} to the far side of {Y}", "move {X} so it is behind {Y}",
		"push {X} past {Y}, away from you", "shove {X} to the back of {Y}",
	},
	PushFront: {
		"push {X} in front of {Y}", "slide {X} to the near side of {Y}", "move {X} so it is in front of {Y}",
		"pull {X} in front of {Y}", "shove {X} to the front of {Y}",
	},
	PlaceOn: {
		"pick {X} and place it on {Y}", "pick up {X} and put it on {Y}", "put {X} on top of {Y}",
		"place {X} onto {Y}", "lift {X} and set it down on {Y}",
	},
	Stack: {
		"stack {X} on {Y}", "stack {X} neatly on top of {Y}", "build a tower of {X} on {Y}",
		"center {X} on top of {Y}", "align {X} on top of {Y}",
	},
	Rotate: {
		"rotate {X}", "turn {X} clockwise", "twist {X}", "spin {X} a little clockwise", "give {X} a clockwise turn",
	},
	Point: {
		"point at {X}", "point to {X}", "hover over {X}", "show me {X}", "indicate {X}",
	},
	Lift: {
		"lift {X}", "pick up {X} and hold it", "raise {X} into the air", "grab {X} and lift it up", "hold {X} up",
	},
}

var shapeWords = [NumShapes][]string{
	Square: {"square", "block"}, Circle: {"circle", "disc"}, Triangle: {"triangle"},
	Star: {"star"}, Ring: {"ring", "donut"}, Cross: {"cross", "plus"},
}

var colourWords = [NumColours][]string{
	Red: {"red"}, Green: {"green"}, Blue: {"blue"}, Yellow: {"yellow"}, Purple: {"purple", "violet"}, Orange: {"orange"},
}

// phrase is a noun phrase for kind k.
func phrase(r *rng, k Kind) string {
	c := colourWords[k.Colour]
	s := shapeWords[k.Shape]
	return "the " + c[r.intn(len(c))] + " " + s[r.intn(len(s))]
}

// Instruction draws a paraphrase of t: a template of its family, noun
// phrases for X and Y, sometimes capitalised, sometimes with a full stop.
func (t Task) Instruction(r *rng) string {
	tm := templates[t.Family]
	s := tm[r.intn(len(tm))]
	s = strings.Replace(s, "{X}", phrase(r, t.X), 1)
	if t.Family.HasY() {
		s = strings.Replace(s, "{Y}", phrase(r, t.Y), 1)
	}
	if r.coin(0.3) {
		s = strings.ToUpper(s[:1]) + s[1:]
	}
	if r.coin(0.3) {
		s += "."
	}
	return s
}

// FamilyPrompts are the paraphrase templates of family f with generic
// objects in place of {X} and {Y} ("push an object to the left of another
// object"): the prompts of zero-shot task recognition, whose text
// embeddings are averaged (prompt ensembling).
func FamilyPrompts(f Family) []string {
	out := make([]string, len(templates[f]))
	for i, s := range templates[f] {
		s = strings.Replace(s, "{X}", "an object", 1)
		out[i] = strings.Replace(s, "{Y}", "another object", 1)
	}
	return out
}

// TaskFamilies is the content of the data set's tasks.json: every family
// with its FamilyPrompts, and the ids of a family's tasks, one block of
// NumKinds·(NumKinds+1) ids each (Task.ID).
func TaskFamilies() *dataset.TaskFamilies {
	tf := &dataset.TaskFamilies{IDsPerFamily: NumKinds * (NumKinds + 1)}
	for f := range NumFamilies {
		tf.Families = append(tf.Families, dataset.TaskFamily{Name: Family(f).String(), Prompts: FamilyPrompts(Family(f))})
	}
	return tf
}

// Tolerances of the predicates.
const (
	tolPos = 1e-4 // table units
	tolYaw = 0.02 // radians
)

// Holds reports whether state s satisfies the instruction of task t, with
// x and y the indices of its objects and s0 the state the episode began
// in:
//
//	push-left    X on the table, wholly left of Y (X.x + X.r ≤ Y.x − Y.r) and
//	             beside it (|X.y − Y.y| ≤ max(X.r, Y.r)); push-right,
//	             -behind (up the image) and -front alike
//	place-on     X rests on Y's top (X.z = Y.z + H), its centre within ½Y.r
//	             of Y's, the hand empty
//	stack        as place-on, with the centres within 0.1Y.r and X turned as
//	             Y modulo X's period
//	rotate       X turned by half its period clockwise from s0, in place, on
//	             the table, the hand empty
//	point        the hand within ½X.r of X's centre, below X's top + 0.08,
//	             open, no object moved
//	lift         X in the hand, its base above 0.15
//
// Every family also requires the objects other than X to be where they
// were in s0.
func (t Task) Holds(s0, s State, x, y int) bool {
	for i := range s.Objects {
		if i == x {
			continue
		}
		a, b := s0.Objects[i], s.Objects[i]
		if math.Hypot(a.X-b.X, a.Y-b.Y) > tolPos || math.Abs(a.Z-b.Z) > tolPos || math.Abs(a.Yaw-b.Yaw) > tolYaw {
			return false
		}
	}
	X := s.Objects[x]
	var Y Object
	if y >= 0 {
		Y = s.Objects[y]
	}
	onTable := X.Z == 0 && s.G.Held != x
	// beside: X on the table, gap ≥ 0 between the two along the
	// direction, the centres at most max(X.r, Y.r) apart across it.
	beside := func(gap, across float64) bool {
		return onTable && gap >= -tolPos && math.Abs(across) <= max(X.R, Y.R)+tolPos
	}
	switch t.Family {
	case PushLeft:
		return beside((Y.X-Y.R)-(X.X+X.R), X.Y-Y.Y)
	case PushRight:
		return beside((X.X-X.R)-(Y.X+Y.R), X.Y-Y.Y)
	case PushBehind:
		return beside((Y.Y-Y.R)-(X.Y+X.R), X.X-Y.X)
	case PushFront:
		return beside((X.Y-X.R)-(Y.Y+Y.R), X.X-Y.X)
	case PlaceOn, Stack:
		d := math.Hypot(X.X-Y.X, X.Y-Y.Y)
		if s.G.Held >= 0 || math.Abs(X.Z-(Y.Z+ObjectHeight)) > tolPos {
			return false
		}
		if t.Family == PlaceOn {
			return d <= 0.5*Y.R
		}
		return d <= 0.1*Y.R && angleMod(X.Yaw-Y.Yaw, X.Shape.Period()) <= tolYaw
	case Rotate:
		X0 := s0.Objects[x]
		p := X.Shape.Period()
		return onTable && s.G.Held < 0 && p > 0 && math.Hypot(X.X-X0.X, X.Y-X0.Y) <= tolPos &&
			math.Abs(remainder(X.Yaw-X0.Yaw-p/2, 2*math.Pi)) <= tolYaw
	case Point:
		X0 := s0.Objects[x]
		return !s.G.Closed && s.G.Held < 0 && math.Hypot(X.X-X0.X, X.Y-X0.Y) <= tolPos &&
			math.Hypot(s.G.X-X.X, s.G.Y-X.Y) <= 0.5*X.R && s.G.Z <= X.Z+ObjectHeight+0.08
	case Lift:
		return s.G.Held == x && X.Z >= 0.15
	}
	return false
}

// angleMod is the distance of angle a from the nearest multiple of p; 0
// when p is 0 (a shape every turn maps onto itself).
func angleMod(a, p float64) float64 {
	if p == 0 {
		return 0
	}
	return math.Abs(remainder(a, p))
}

// remainder is a − p·round(a/p), in [−p/2, p/2].
func remainder(a, p float64) float64 { return a - p*math.Round(a/p) }

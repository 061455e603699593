package synthvla

import (
	"math"
	"math/rand/v2"
)

// Shape is the outline of an object, seen from above.
type Shape int

// The shapes.
const (
	Square Shape = iota
	Circle
	Triangle
	Star
	Ring
	Cross
	NumShapes int = iota
)

var shapeNames = [...]string{"square", "circle", "triangle", "star", "ring", "cross"}

func (s Shape) String() string { return shapeNames[s] }

// Period is the smallest turn that maps the shape onto itself (0 for the
// circle and the ring, which every turn does).
func (s Shape) Period() float64 {
	switch s {
	case Square, Cross:
		return math.Pi / 2
	case Triangle:
		return 2 * math.Pi / 3
	case Star:
		return 2 * math.Pi / 5
	}
	return 0
}

// Colour is the paint of an object.
type Colour int

// The colours.
const (
	Red Colour = iota
	Green
	Blue
	Yellow
	Purple
	Orange
	NumColours int = iota
)

var colourNames = [...]string{"red", "green", "blue", "yellow", "purple", "orange"}

// colourRGB are the paints, in [0, 1] sRGB.
var colourRGB = [...][3]float64{
	{0.86, 0.13, 0.12},
	{0.16, 0.66, 0.22},
	{0.14, 0.33, 0.86},
	{0.95, 0.83, 0.12},
	{0.56, 0.22, 0.72},
	{0.98, 0.52, 0.08},
}

func (c Colour) String() string { return colourNames[c] }

// Kind is an object–colour combination, "the red star".
type Kind struct {
	Shape  Shape
	Colour Colour
}

// NumKinds is the number of object–colour combinations.
const NumKinds = NumShapes * NumColours

// Index numbers the kinds 0 … NumKinds−1.
func (k Kind) Index() int { return int(k.Shape)*NumColours + int(k.Colour) }

// KindOf is the kind of index i.
func KindOf(i int) Kind { return Kind{Shape(i / NumColours), Colour(i % NumColours)} }

func (k Kind) String() string { return k.Colour.String() + " " + k.Shape.String() }

// HeldOut are the combinations that appear only in the validation split:
// one per shape and one per colour, so that every shape and every colour
// is seen in training, but never in these pairs.
var HeldOut = []Kind{
	{Star, Red}, {Ring, Green}, {Triangle, Blue}, {Cross, Yellow}, {Circle, Purple}, {Square, Orange},
}

// IsHeldOut reports whether k is one of HeldOut.
func IsHeldOut(k Kind) bool {
	for _, h := range HeldOut {
		if h == k {
			return true
		}
	}
	return false
}

// World constants, in table units: the table is the square [0, 1]², x to
// the right of the image, y down the image (towards the camera's bottom
// edge), z up from the table.
const (
	ObjectHeight = 0.08 // H: every object is a prism this tall
	ZTravel      = 0.26 // the gripper's height when it carries or travels
	ZMax         = 0.40 // the gripper's highest reach
	ZPush        = 0.03 // the fingertips' height while pushing
	FistRadius   = 0.025
	MinRadius    = 0.055
	MaxRadius    = 0.080
)

// Object is one prism on the table.
type Object struct {
	Kind
	X, Y float64 // centre of the footprint
	Z    float64 // height of the base: 0 on the table, H on another object
	R    float64 // radius of the footprint
	Yaw  float64 // turn about z, clockwise in the image
}

// Gripper is the end effector: a two-finger hand seen from above.
type Gripper struct {
	X, Y, Z, Yaw float64
	// Aperture is how open the fingers are, 1 open to 0 closed.
	Aperture float64
	// Closed is the last gripper command.
	Closed bool
	// Held is the index of the object in the hand, −1 for none; OffX,
	// OffY is the object's centre relative to the hand when it was
	// grasped, turning with the hand.
	Held       int
	OffX, OffY float64
}

// State is the scene at one frame.
type State struct {
	Objects []Object
	G       Gripper
}

// Clone is a deep copy of s.
func (s State) Clone() State {
	s.Objects = append([]Object(nil), s.Objects...)
	return s
}

// Action is the 7-dimensional action of a step: the end effector's
// displacement (dx, dy, dz) in table units, its turn (droll, dpitch, dyaw)
// in radians, and the gripper command (1 close, 0 open). The hand looks
// straight down, so droll and dpitch are always 0.
type Action [7]float32

// Bounds of an action's components (see Controller): |dx|, |dy| ≤ VMaxXY,
// |dz| ≤ VMaxZ, |dyaw| ≤ VMaxYaw.
const (
	VMaxXY  = 0.10
	VMaxZ   = 0.10
	VMaxYaw = math.Pi / 10
)

// Apply advances the scene by one action, the physics of the world:
//
//   - the hand moves by (dx, dy, dz) and turns by dyaw, kept over the
//     table and between 0 and ZMax;
//   - the fingers move towards the command by at most ½ per step;
//   - a close command at a hand that is not holding grasps the topmost
//     object whose centre is within ½R of the hand and whose sides the
//     fingertips reach;
//   - a held object follows the hand (its offset turning with the hand);
//   - an open command releases it: it falls onto the topmost object under
//     its centre, or onto the table;
//   - a closed, empty hand below the objects' tops is a disc of radius
//     FistRadius that pushes the objects on the table out of its way,
//     along the line from its centre to theirs, swept in substeps of a
//     quarter of its radius.
func (s *State) Apply(a Action) {
	g := &s.G
	dx, dy, dz, dyaw := float64(a[0]), float64(a[1]), float64(a[2]), float64(a[5])
	x0, y0 := g.X, g.Y
	g.X = clamp(g.X+dx, 0, 1)
	g.Y = clamp(g.Y+dy, 0, 1)
	g.Z = clamp(g.Z+dz, 0, ZMax)
	g.Yaw += dyaw
	closed := a[6] > 0.5
	if closed {
		g.Aperture = max(0, g.Aperture-0.5)
	} else {
		g.Aperture = min(1, g.Aperture+0.5)
	}
	switch {
	case closed && !g.Closed && g.Held < 0:
		best := -1
		for i, o := range s.Objects {
			if math.Hypot(o.X-g.X, o.Y-g.Y) <= 0.5*o.R && g.Z >= o.Z && g.Z <= o.Z+ObjectHeight+0.01 {
				if best < 0 || o.Z > s.Objects[best].Z {
					best = i
				}
			}
		}
		if best >= 0 {
			g.Held = best
			g.OffX, g.OffY = s.Objects[best].X-g.X, s.Objects[best].Y-g.Y
		}
	case !closed && g.Closed && g.Held >= 0:
		o := &s.Objects[g.Held]
		o.Z = s.support(g.Held)
		g.Held = -1
	}
	g.Closed = closed
	if g.Held >= 0 {
		o := &s.Objects[g.Held]
		sn, cs := math.Sincos(dyaw)
		g.OffX, g.OffY = cs*g.OffX-sn*g.OffY, sn*g.OffX+cs*g.OffY
		o.X, o.Y = g.X+g.OffX, g.Y+g.OffY
		o.Z = max(0, g.Z-ObjectHeight/2)
		o.Yaw += dyaw
	} else if closed && g.Z < ObjectHeight {
		// The fist sweeps from its old place to its new one in substeps
		// shorter than its radius, so that it cannot pass through an
		// object in one step.
		dx, dy = g.X-x0, g.Y-y0
		k := int(math.Ceil(math.Hypot(dx, dy) / (FistRadius / 4)))
		for j := 1; j <= k; j++ {
			s.push(x0+dx*float64(j)/float64(k), y0+dy*float64(j)/float64(k))
		}
		if k == 0 {
			s.push(g.X, g.Y)
		}
	}
}

// push moves the objects on the table out of the fist at (gx, gy), each
// along the line from the fist's centre to its own.
func (s *State) push(gx, gy float64) {
	for i := range s.Objects {
		o := &s.Objects[i]
		if o.Z != 0 {
			continue
		}
		d := math.Hypot(o.X-gx, o.Y-gy)
		if r := o.R + FistRadius; d < r && d > 0 {
			o.X, o.Y = gx+(o.X-gx)*r/d, gy+(o.Y-gy)*r/d
		}
	}
}

// support is the height object i comes to rest at: the top of the highest
// other object whose footprint holds i's centre, or the table.
func (s *State) support(i int) float64 {
	o := s.Objects[i]
	z := 0.0
	for j, p := range s.Objects {
		if j != i && p.Z+ObjectHeight <= o.Z+1e-4 && math.Hypot(o.X-p.X, o.Y-p.Y) < p.R {
			z = max(z, p.Z+ObjectHeight)
		}
	}
	return z
}

func clamp(x, lo, hi float64) float64 { return min(max(x, lo), hi) }

// rng is the package's random source: a PCG (math/rand/v2) seeded by a
// hash of a key, with its own conversions so that the streams do not
// depend on how a library derives floats or bounded integers.
type rng struct{ pcg rand.PCG }

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// newRNG seeds a PCG from the words of a key.
func newRNG(parts ...uint64) *rng {
	h := mix64(0x73796e7468766c61) // "synthvla"
	for _, p := range parts {
		h = mix64(h^p) + 0x9e3779b97f4a7c15
	}
	r := &rng{}
	r.pcg.Seed(mix64(h), mix64(h^0xd1b54a32d192ed03))
	return r
}

func (r *rng) uniform() float64               { return float64(r.pcg.Uint64()>>11) * 0x1p-53 }
func (r *rng) between(lo, hi float64) float64 { return lo + (hi-lo)*r.uniform() }

// intn is uniform in [0, n), by rejection so that it has no bias.
func (r *rng) intn(n int) int {
	if n <= 1 {
		return 0
	}
	limit := math.MaxUint64 - math.MaxUint64%uint64(n)
	for {
		if v := r.pcg.Uint64(); v < limit {
			return int(v % uint64(n))
		}
	}
}

func (r *rng) coin(p float64) bool { return r.uniform() < p }

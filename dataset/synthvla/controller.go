package synthvla

import (
	"math"
)

// Waypoint is a pose of the hand and a gripper command: the controller
// moves the hand to (X, Y, Z, Yaw) while commanding Closed, and moves on
// once the hand is there and its fingers have settled, after Hold more
// steps.
type Waypoint struct {
	X, Y, Z, Yaw float64
	Closed       bool
	Hold         int
}

// Controller is the scripted policy: a state machine over a plan of
// waypoints, without I/O. Act looks only at the hand.
type Controller struct {
	Plan []Waypoint
	// V, VZ and VYaw are the speeds per step (at most VMaxXY, VMaxZ and
	// VMaxYaw).
	V, VZ, VYaw float64

	i    int // the waypoint being approached
	held int // steps held at waypoint i
}

// Done reports whether the plan is finished.
func (c *Controller) Done() bool { return c.i >= len(c.Plan) }

// Phase is the index of the waypoint being approached (len(Plan) when done).
func (c *Controller) Phase() int { return c.i }

const reached = 1e-6

// Act returns the action of the next step for hand g, and false when the
// plan is finished (and the action is a still hand keeping its command).
// Each step moves the hand straight towards the waypoint, by at most V in
// the table's plane, VZ in height and VYaw in turn:
//
//	Δp = (p* − p)·min(1, V/‖p* − p‖)
//
// rounded to float32, the precision of the recorded action.
func (c *Controller) Act(g Gripper) (Action, bool) {
	for c.i < len(c.Plan) {
		w := c.Plan[c.i]
		ex, ey, ez, eyaw := w.X-g.X, w.Y-g.Y, w.Z-g.Z, w.Yaw-g.Yaw
		settled := (w.Closed && g.Aperture == 0) || (!w.Closed && g.Aperture == 1)
		if math.Abs(ex) <= reached && math.Abs(ey) <= reached && math.Abs(ez) <= reached && math.Abs(eyaw) <= reached && settled && w.Closed == g.Closed {
			if c.held < w.Hold {
				c.held++
				return Action{6: b2f(w.Closed)}, true
			}
			c.i++
			c.held = 0
			continue
		}
		var a Action
		if n := math.Hypot(ex, ey); n > c.V {
			ex, ey = ex*c.V/n, ey*c.V/n
		}
		a[0], a[1] = float32(ex), float32(ey)
		a[2] = float32(clamp(ez, -c.VZ, c.VZ))
		a[5] = float32(clamp(eyaw, -c.VYaw, c.VYaw))
		a[6] = b2f(w.Closed)
		return a, true
	}
	return Action{6: b2f(g.Closed)}, false
}

func b2f(b bool) float32 {
	if b {
		return 1
	}
	return 0
}

// Plan is the controller's script for task t on objects x and y of state
// s, at the speeds of c. Every family is a sequence of moves of the hand
// and gripper commands:
//
//	grasp X      over X at ZTravel, open; down to X's middle; close; up
//	push to p*   closed over the start p₀ − d(r + FistRadius + 0.02) behind X,
//	             d = (p* − p₀)/‖p* − p₀‖; down to ZPush; along d until X is
//	             at p*; up
//	place-on     grasp X; over p* on Y at ZTravel; down until X's base is on
//	             Y's top; open; up
//	stack        as place-on with p* = Y's centre, the hand turning on the way
//	             by −(X.yaw − Y.yaw) modulo X's period
//	rotate       grasp X; up 0.08; turn by half X's period; down; open; up
//	point        over X at ZTravel; down to 0.06 above X's top; hold
//	lift         grasp X; up to 0.3; hold
//
// target is p* of the push and place families (ignored by the others).
func Plan(t Task, s State, x, y int, tx, ty float64) []Waypoint {
	g := s.G
	X := s.Objects[x]
	yaw := g.Yaw
	var p []Waypoint
	add := func(w Waypoint) { p = append(p, w) }
	grasp := func() {
		add(Waypoint{X: X.X, Y: X.Y, Z: ZTravel, Yaw: yaw})
		add(Waypoint{X: X.X, Y: X.Y, Z: X.Z + ObjectHeight/2, Yaw: yaw})
		add(Waypoint{X: X.X, Y: X.Y, Z: X.Z + ObjectHeight/2, Yaw: yaw, Closed: true})
	}
	switch t.Family {
	case PushLeft, PushRight, PushBehind, PushFront:
		dx, dy := tx-X.X, ty-X.Y
		n := math.Hypot(dx, dy)
		dx, dy = dx/n, dy/n
		back := X.R + FistRadius + 0.02
		reach := X.R + FistRadius
		sx, sy := X.X-dx*back, X.Y-dy*back
		ex, ey := tx-dx*reach, ty-dy*reach
		add(Waypoint{X: sx, Y: sy, Z: ZTravel, Yaw: yaw, Closed: true})
		add(Waypoint{X: sx, Y: sy, Z: ZPush, Yaw: yaw, Closed: true})
		add(Waypoint{X: ex, Y: ey, Z: ZPush, Yaw: yaw, Closed: true})
		add(Waypoint{X: ex, Y: ey, Z: ZPush + 0.15, Yaw: yaw, Closed: true})
	case PlaceOn, Stack:
		Y := s.Objects[y]
		grasp()
		add(Waypoint{X: X.X, Y: X.Y, Z: ZTravel, Yaw: yaw, Closed: true})
		if t.Family == Stack {
			yaw -= remainder(X.Yaw-Y.Yaw, X.Shape.Period())
		}
		z := Y.Z + ObjectHeight + ObjectHeight/2
		add(Waypoint{X: tx, Y: ty, Z: ZTravel, Yaw: yaw, Closed: true})
		add(Waypoint{X: tx, Y: ty, Z: z, Yaw: yaw, Closed: true})
		add(Waypoint{X: tx, Y: ty, Z: z, Yaw: yaw})
		add(Waypoint{X: tx, Y: ty, Z: z + 0.12, Yaw: yaw})
	case Rotate:
		grasp()
		z := X.Z + ObjectHeight/2
		add(Waypoint{X: X.X, Y: X.Y, Z: z + 0.08, Yaw: yaw, Closed: true})
		yaw += X.Shape.Period() / 2
		add(Waypoint{X: X.X, Y: X.Y, Z: z + 0.08, Yaw: yaw, Closed: true})
		add(Waypoint{X: X.X, Y: X.Y, Z: z, Yaw: yaw, Closed: true})
		add(Waypoint{X: X.X, Y: X.Y, Z: z, Yaw: yaw})
		add(Waypoint{X: X.X, Y: X.Y, Z: z + 0.12, Yaw: yaw})
	case Point:
		add(Waypoint{X: X.X, Y: X.Y, Z: ZTravel, Yaw: yaw})
		add(Waypoint{X: X.X, Y: X.Y, Z: X.Z + ObjectHeight + 0.06, Yaw: yaw, Hold: 2})
	case Lift:
		grasp()
		add(Waypoint{X: X.X, Y: X.Y, Z: 0.3, Yaw: yaw, Closed: true, Hold: 2})
	}
	return p
}

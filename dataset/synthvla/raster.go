package synthvla

import "math"

// The rasteriser draws shapes given by signed distance functions: d(p) < 0
// inside, > 0 outside, |d| the distance to the outline. A pixel whose
// centre lies at distance d (in pixels) from a straight edge is covered
// over the fraction
//
//	α = clamp(½ − d, 0, 1)
//
// of its area when the edge is parallel to a pixel side, and nearly so at
// other angles: that coverage is the pixel's opacity, which anti-aliases
// every outline in one evaluation per pixel. Soft shapes (shadows) widen
// the ramp: α = clamp(½ − d/w, 0, 1) for a blur of w pixels.

// canvas is an S×S RGB image of float64 channels in [0, 1], row-major.
type canvas struct {
	S   int
	Pix []float64 // 3 per pixel
}

func newCanvas(s int) *canvas { return &canvas{S: s, Pix: make([]float64, 3*s*s)} }

// sdf is a signed distance in table units of a point in the shape's own
// frame (centred, unturned, unscaled).
type sdf func(x, y float64) float64

// layer is a shape placed on the canvas: centred at (cx, cy) in table
// units, turned by yaw, scaled by scale, with a bounding radius br.
type layer struct {
	f          sdf
	cx, cy     float64
	yaw, scale float64
	br         float64
}

// fill composites colour c over the pixels the layer covers with opacity
// op·α, where α is the coverage of the outline grown by grow pixels and
// softened over width pixels (width 1: a sharp, anti-aliased edge).
func (cv *canvas) fill(l layer, c [3]float64, op, grow, width float64) {
	s := float64(cv.S)
	sn, cs := math.Sincos(-l.yaw)
	reach := (l.br*l.scale)*s + grow + width + 1
	x0, x1 := int(math.Floor(l.cx*s-reach)), int(math.Ceil(l.cx*s+reach))
	y0, y1 := int(math.Floor(l.cy*s-reach)), int(math.Ceil(l.cy*s+reach))
	x0, y0 = max(x0, 0), max(y0, 0)
	x1, y1 = min(x1, cv.S-1), min(y1, cv.S-1)
	for py := y0; py <= y1; py++ {
		for px := x0; px <= x1; px++ {
			// The pixel centre in the shape's frame, table units.
			ux := (float64(px)+0.5)/s - l.cx
			uy := (float64(py)+0.5)/s - l.cy
			lx := (cs*ux - sn*uy) / l.scale
			ly := (sn*ux + cs*uy) / l.scale
			d := l.f(lx, ly)*l.scale*s - grow // pixels
			a := clamp(0.5-d/width, 0, 1) * op
			if a <= 0 {
				continue
			}
			p := cv.Pix[3*(py*cv.S+px):]
			for k := range 3 {
				p[k] += a * (c[k] - p[k])
			}
		}
	}
}

// darken multiplies the pixels a soft layer covers by 1 − op·α.
func (cv *canvas) darken(l layer, op, width float64) {
	cv.fill(l, [3]float64{}, op, 0, width)
}

// norm is the length of (x, y); at the table's scale a plain square root
// cannot overflow, and it is cheaper than math.Hypot.
func norm(x, y float64) float64 { return math.Sqrt(x*x + y*y) }

// Signed distance functions of the shapes, for a footprint radius r.

func sdCircle(r float64) sdf { return func(x, y float64) float64 { return norm(x, y) - r } }

// sdRing is an annulus between 0.4r and r.
func sdRing(r float64) sdf {
	return func(x, y float64) float64 { return math.Abs(norm(x, y)-0.7*r) - 0.3*r }
}

// sdBox is a rectangle of half sides (a, b).
func sdBox(a, b float64) sdf {
	return func(x, y float64) float64 {
		qx, qy := math.Abs(x)-a, math.Abs(y)-b
		return norm(max(qx, 0), max(qy, 0)) + min(max(qx, qy), 0)
	}
}

// sdUnion is the union of two shapes (exact outside, a bound inside).
func sdUnion(f, g sdf) sdf { return func(x, y float64) float64 { return min(f(x, y), g(x, y)) } }

// sdPolygon is a closed polygon of vertices v (x0, y0, x1, y1, …): the
// distance to the nearest edge, negative inside by the even–odd rule.
func sdPolygon(v []float64) sdf {
	n := len(v) / 2
	return func(x, y float64) float64 {
		best := math.Inf(1) // squared
		inside := false
		for i, j := 0, n-1; i < n; j, i = i, i+1 {
			ax, ay, bx, by := v[2*j], v[2*j+1], v[2*i], v[2*i+1]
			ex, ey := bx-ax, by-ay
			wx, wy := x-ax, y-ay
			t := clamp((wx*ex+wy*ey)/(ex*ex+ey*ey), 0, 1)
			dx, dy := wx-t*ex, wy-t*ey
			best = min(best, dx*dx+dy*dy)
			if (ay > y) != (by > y) && x < ax+(y-ay)*ex/ey {
				inside = !inside
			}
		}
		if inside {
			return -math.Sqrt(best)
		}
		return math.Sqrt(best)
	}
}

// regular gives the vertices of a star polygon: k points at radius r,
// alternating with k at radius ri when ri > 0, the first pointing up.
func regular(k int, r, ri float64) []float64 {
	var v []float64
	step := 2 * math.Pi / float64(k)
	for i := range k {
		a := -math.Pi/2 + float64(i)*step
		v = append(v, r*math.Cos(a), r*math.Sin(a))
		if ri > 0 {
			b := a + step/2
			v = append(v, ri*math.Cos(b), ri*math.Sin(b))
		}
	}
	return v
}

// shapeSDF is the outline of shape sh with footprint radius r: every point
// of the shape lies within r of its centre.
func shapeSDF(sh Shape, r float64) sdf {
	switch sh {
	case Square:
		return sdBox(0.7*r, 0.7*r)
	case Circle:
		return sdCircle(0.92 * r)
	case Triangle:
		return sdPolygon(regular(3, r, 0))
	case Star:
		return sdPolygon(regular(5, r, 0.45*r))
	case Ring:
		return sdRing(0.95 * r)
	case Cross:
		return sdUnion(sdBox(0.95*r, 0.3*r), sdBox(0.3*r, 0.95*r))
	}
	return sdCircle(r)
}

package synthvla

import (
	"math"
	"slices"
)

// Texture is the pattern of the table's surface.
type Texture int

// The textures.
const (
	Plain   Texture = iota // fine noise
	Grain                  // wavy stripes, as of wood
	Checker                // square tiles
	Speckle                // scattered dark flecks
	numTextures
)

var textureNames = [...]string{"plain", "grain", "checker", "speckle"}

func (t Texture) String() string { return textureNames[t] }

// tables are the base colours of the table, with names for the metadata.
var tables = []struct {
	name string
	rgb  [3]float64
}{
	{"oak", [3]float64{0.62, 0.45, 0.28}},
	{"walnut", [3]float64{0.36, 0.24, 0.16}},
	{"pine", [3]float64{0.80, 0.67, 0.47}},
	{"grey", [3]float64{0.52, 0.52, 0.54}},
	{"felt", [3]float64{0.18, 0.40, 0.27}},
	{"white", [3]float64{0.86, 0.86, 0.83}},
	{"slate", [3]float64{0.24, 0.27, 0.31}},
	{"cloth", [3]float64{0.30, 0.38, 0.58}},
}

// Look is the appearance of an episode: its table and its light.
type Look struct {
	Table   int // index into the table colours
	Texture Texture
	// TexScale is the period of the texture in pixels at 64×64, TexAmp its
	// contrast, TexAngle the direction of grain.
	TexScale, TexAmp, TexAngle float64
	// Brightness b multiplies every channel; Temperature τ ∈ [−1, 1]
	// warms (τ > 0: red up, blue down) or cools the light; Gradient is
	// the change of brightness from one side of the table to the other,
	// along the light's direction (LightX, LightY), which is also the
	// direction shadows fall.
	Brightness, Temperature, Gradient float64
	LightX, LightY                    float64
	// Noise keys the texture's random parts.
	Noise uint64
}

// TableName names the table colour.
func (l Look) TableName() string { return tables[l.Table].name }

func sampleLook(r *rng) Look {
	a := r.between(0, 2*math.Pi)
	return Look{
		Table:       r.intn(len(tables)),
		Texture:     Texture(r.intn(int(numTextures))),
		TexScale:    r.between(5, 14),
		TexAmp:      r.between(0.04, 0.12),
		TexAngle:    r.between(0, math.Pi),
		Brightness:  r.between(0.75, 1.2),
		Temperature: r.between(-1, 1),
		Gradient:    r.between(0, 0.25),
		LightX:      math.Cos(a),
		LightY:      math.Sin(a),
		Noise:       r.pcg.Uint64(),
	}
}

// noise is a hash of a pixel to [0, 1).
func noise(key uint64, x, y int) float64 {
	return float64(mix64(key^uint64(x)<<32^uint64(y)*0x9e3779b97f4a7c15)>>11) * 0x1p-53
}

// renderer draws the frames of one episode at S×S pixels.
type renderer struct {
	S      int
	look   Look
	bg     []float64 // the table, drawn once
	shapes []sdf     // of each object, by index
	light  [3]float64
	out    *canvas
	order  []int
}

func newRenderer(S int, look Look, objs []Object) *renderer {
	r := &renderer{S: S, look: look, out: newCanvas(S)}
	for _, o := range objs {
		r.shapes = append(r.shapes, shapeSDF(o.Shape, o.R))
	}
	tau := look.Temperature
	r.light = [3]float64{look.Brightness * (1 + 0.12*tau), look.Brightness * (1 + 0.02*tau), look.Brightness * (1 - 0.12*tau)}
	r.bg = make([]float64, 3*S*S)
	base := tables[look.Table].rgb
	px := float64(S) / 64 // texture scales with the image
	sa, ca := math.Sincos(look.TexAngle)
	for y := range S {
		for x := range S {
			u := (ca*float64(x) + sa*float64(y)) / px
			w := (-sa*float64(x) + ca*float64(y)) / px
			n := noise(look.Noise, x, y) - 0.5
			f := 1 + 0.3*look.TexAmp*n
			switch look.Texture {
			case Grain:
				f += look.TexAmp * math.Sin(2*math.Pi*(u/look.TexScale+0.25*math.Sin(2*math.Pi*w/(4*look.TexScale))))
			case Checker:
				i := int(math.Floor(float64(x)/px/look.TexScale)) + int(math.Floor(float64(y)/px/look.TexScale))
				if i&1 == 0 {
					f += look.TexAmp
				} else {
					f -= look.TexAmp
				}
			case Speckle:
				if n > 0.42 {
					f -= 3 * look.TexAmp
				}
			}
			for k := range 3 {
				r.bg[3*(y*S+x)+k] = clamp(base[k]*f, 0, 1)
			}
		}
	}
	return r
}

// render draws state s into dst (S·S·3 bytes, HWC RGB): the table, the
// objects from the lowest up, each over its shadow, then the hand over
// its shadow, then the light.
func (r *renderer) render(s *State, dst []byte) {
	cv := r.out
	copy(cv.Pix, r.bg)
	r.order = r.order[:0]
	for i := range s.Objects {
		r.order = append(r.order, i)
	}
	slices.SortStableFunc(r.order, func(a, b int) int {
		za, zb := s.Objects[a].Z, s.Objects[b].Z
		switch {
		case za < zb:
			return -1
		case za > zb:
			return 1
		}
		return 0
	})
	const px = 1.0 / 64 // one pixel at 64×64, in table units: shadows scale with the image
	for _, i := range r.order {
		o := s.Objects[i]
		top := o.Z + ObjectHeight
		l := layer{f: r.shapes[i], cx: o.X, cy: o.Y, yaw: o.Yaw, scale: 1 + 0.6*o.Z, br: o.R}
		sh := l
		off := (1 + 14*top) * px
		sh.cx += off * r.look.LightX
		sh.cy += off * r.look.LightY
		cv.darken(sh, 0.45, 1.5+8*o.Z)
		c := colourRGB[o.Colour]
		lift := 1 + 0.3*o.Z // higher faces catch more light
		rim := [3]float64{0.5 * c[0], 0.5 * c[1], 0.5 * c[2]}
		face := [3]float64{min(1, c[0]*lift), min(1, c[1]*lift), min(1, c[2]*lift)}
		cv.fill(l, rim, 1, 0, 1)
		cv.fill(l, face, 1, -1, 1)
	}
	g := s.G
	sep := 0.012 + g.Aperture*(2*MaxRadius+0.03-0.012)
	if g.Held >= 0 {
		sep = max(sep, 1.6*s.Objects[g.Held].R)
	}
	hand := handSDF(sep)
	l := layer{f: hand, cx: g.X, cy: g.Y, yaw: g.Yaw, scale: 1 + 0.6*g.Z, br: math.Hypot(sep/2+0.024, 0.05)}
	sh := l
	off := (1 + 14*g.Z) * px
	sh.cx += off * r.look.LightX
	sh.cy += off * r.look.LightY
	cv.darken(sh, 0.4, 1.5+8*g.Z)
	cv.fill(l, [3]float64{0.80, 0.80, 0.82}, 1, 0.8, 1)
	cv.fill(l, [3]float64{0.22, 0.23, 0.27}, 1, 0, 1)
	// The light: brightness, colour temperature and a gradient.
	S := float64(r.S)
	for y := range r.S {
		for x := range r.S {
			t := ((float64(x)+0.5)/S-0.5)*r.look.LightX + ((float64(y)+0.5)/S-0.5)*r.look.LightY
			gr := 1 - r.look.Gradient*t
			i := 3 * (y*r.S + x)
			for k := range 3 {
				dst[i+k] = uint8(math.Round(255 * clamp(cv.Pix[i+k]*r.light[k]*gr, 0, 1)))
			}
		}
	}
}

// handSDF is the two-finger hand seen from above with its fingers sep
// apart: two fingers along y joined by a bar at their far end.
func handSDF(sep float64) sdf {
	const w, h = 0.011, 0.04 // half width and half length of a finger
	finger := sdBox(w, h)
	bar := sdBox(sep/2+2*w, 0.008)
	cx := sep/2 + w
	return func(x, y float64) float64 {
		d := min(finger(x-cx, y), finger(x+cx, y))
		return min(d, bar(x, y+h))
	}
}

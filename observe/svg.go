package observe

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// series is one line of a chart.
type series struct {
	name  string
	color string
	x, y  []float64
}

// mark is a labelled vertical line (a generation's start).
type mark struct {
	x     float64
	label string
}

// chart is a line chart drawn as inline SVG.
type chart struct {
	id                    string
	title, xLabel, yLabel string
	w, h                  int
	series                []series
	marks                 []mark
}

// chart margins, in SVG units.
const (
	marginLeft   = 64
	marginRight  = 18
	marginTop    = 30
	marginBottom = 42
)

// svg draws the chart: axes with round ticks, a polyline per series, the
// marks, and a legend when there is more than one series.
func (c chart) svg() template.HTML {
	if c.w == 0 {
		c.w, c.h = 560, 240
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="%s" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		html.EscapeString(c.id), c.w, c.h, c.w, c.h, html.EscapeString(c.title))
	fmt.Fprintf(&b, `<text class="title" x="%d" y="18">%s</text>`, marginLeft, html.EscapeString(c.title))
	xlo, xhi, ylo, yhi, ok := c.bounds()
	pw, ph := float64(c.w-marginLeft-marginRight), float64(c.h-marginTop-marginBottom)
	fmt.Fprintf(&b, `<rect class="frame" x="%d" y="%d" width="%g" height="%g"/>`, marginLeft, marginTop, pw, ph)
	if !ok {
		fmt.Fprintf(&b, `<text class="empty" x="%g" y="%g" text-anchor="middle">no data yet</text></svg>`,
			float64(marginLeft)+pw/2, float64(marginTop)+ph/2)
		return template.HTML(b.String())
	}
	xt, xstep := niceTicks(xlo, xhi, 6)
	yt, ystep := niceTicks(ylo, yhi, 5)
	xlo, xhi = xt[0], xt[len(xt)-1]
	ylo, yhi = yt[0], yt[len(yt)-1]
	px := func(x float64) float64 { return float64(marginLeft) + (x-xlo)/(xhi-xlo)*pw }
	py := func(y float64) float64 { return float64(marginTop) + (1-(y-ylo)/(yhi-ylo))*ph }
	for _, t := range yt {
		y := py(t)
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%.1f" y1="%.1f" y2="%.1f"/>`, marginLeft, float64(marginLeft)+pw, y, y)
		fmt.Fprintf(&b, `<text class="tick" x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`, marginLeft-6, y, tickLabel(t, ystep))
	}
	for _, t := range xt {
		x := px(t)
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" x2="%.1f" y1="%d" y2="%.1f"/>`, x, x, marginTop, float64(marginTop)+ph)
		fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x, float64(marginTop)+ph+16, tickLabel(t, xstep))
	}
	fmt.Fprintf(&b, `<text class="label" x="%.1f" y="%d" text-anchor="middle">%s</text>`, float64(marginLeft)+pw/2, c.h-6, html.EscapeString(c.xLabel))
	fmt.Fprintf(&b, `<text class="label" transform="translate(14 %.1f) rotate(-90)" text-anchor="middle">%s</text>`, float64(marginTop)+ph/2, html.EscapeString(c.yLabel))
	for _, m := range c.marks {
		if m.x < xlo || m.x > xhi || math.IsNaN(m.x) {
			continue
		}
		x := px(m.x)
		fmt.Fprintf(&b, `<line class="mark" x1="%.1f" x2="%.1f" y1="%d" y2="%.1f"/>`, x, x, marginTop, float64(marginTop)+ph)
		fmt.Fprintf(&b, `<text class="mark-label" x="%.1f" y="%d">%s</text>`, x+3, marginTop+11, html.EscapeString(m.label))
	}
	for _, s := range c.series {
		var pts strings.Builder
		n := 0
		for j := range s.x {
			if j >= len(s.y) || !finite(s.x[j]) || !finite(s.y[j]) {
				continue
			}
			if n > 0 {
				pts.WriteByte(' ')
			}
			fmt.Fprintf(&pts, "%.1f,%.1f", px(s.x[j]), py(s.y[j]))
			n++
		}
		if n == 0 {
			continue
		}
		fmt.Fprintf(&b, `<polyline class="series" data-series="%s" fill="none" stroke="%s" stroke-width="2" points="%s"/>`,
			html.EscapeString(s.name), html.EscapeString(s.color), pts.String())
		if n == 1 { // a lone point draws no line
			fmt.Fprintf(&b, `<circle cx="%s" r="3" fill="%s"/>`, strings.Replace(pts.String(), ",", `" cy="`, 1), html.EscapeString(s.color))
		}
	}
	if len(c.series) > 1 { // the legend, right-aligned on the title's line
		x := float64(c.w - marginRight)
		for i := len(c.series) - 1; i >= 0; i-- {
			s := c.series[i]
			x -= 24 + 6.2*float64(len([]rune(s.name)))
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="14" y2="14" stroke="%s" stroke-width="3"/><text class="legend" x="%.1f" y="14" dominant-baseline="middle">%s</text>`,
				x, x+16, html.EscapeString(s.color), x+20, html.EscapeString(s.name))
			x -= 10
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// bounds is the range of the finite points of every series.
func (c chart) bounds() (xlo, xhi, ylo, yhi float64, ok bool) {
	xlo, ylo = math.Inf(1), math.Inf(1)
	xhi, yhi = math.Inf(-1), math.Inf(-1)
	for _, s := range c.series {
		for j := range s.x {
			if j >= len(s.y) || !finite(s.x[j]) || !finite(s.y[j]) {
				continue
			}
			xlo, xhi = math.Min(xlo, s.x[j]), math.Max(xhi, s.x[j])
			ylo, yhi = math.Min(ylo, s.y[j]), math.Max(yhi, s.y[j])
			ok = true
		}
	}
	return
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// niceTicks returns about n round tick values (multiples of 1, 2 or 5 ·
// 10^k) that cover [lo, hi], and their spacing.
func niceTicks(lo, hi float64, n int) ([]float64, float64) {
	if hi < lo {
		lo, hi = hi, lo
	}
	if hi == lo {
		d := math.Abs(lo) * 0.1
		if d == 0 {
			d = 1
		}
		lo, hi = lo-d, hi+d
	}
	step := niceNum((hi - lo) / float64(max(1, n-1)))
	start := math.Floor(lo/step) * step
	end := math.Ceil(hi/step) * step
	var ticks []float64
	for i := 0; ; i++ {
		t := start + float64(i)*step
		if t > end+step/2 || i > 100 {
			break
		}
		if math.Abs(t) < step*1e-9 {
			t = 0
		}
		ticks = append(ticks, t)
	}
	if len(ticks) < 2 {
		ticks = append(ticks, start+step)
	}
	return ticks, step
}

// niceNum rounds x > 0 to the nearest of 1, 2, 5 or 10 times a power of
// ten.
func niceNum(x float64) float64 {
	if !(x > 0) || math.IsInf(x, 0) {
		return 1
	}
	e := math.Floor(math.Log10(x))
	f := x / math.Pow(10, e)
	var nf float64
	switch {
	case f < 1.5:
		nf = 1
	case f < 3:
		nf = 2
	case f < 7:
		nf = 5
	default:
		nf = 10
	}
	return nf * math.Pow(10, e)
}

// tickLabel formats a tick with as many decimals as its spacing needs.
func tickLabel(v, step float64) string {
	a := math.Abs(v)
	if a >= 1e6 || (a > 0 && a < 1e-4) {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	d := 0
	if step < 1 {
		d = int(math.Ceil(-math.Log10(step) - 1e-9))
	}
	return strconv.FormatFloat(v, 'f', d, 64)
}

package observe

import (
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
)

func TestNiceTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		n      int
		step   float64
	}{
		{0, 1, 6, 0.2},
		{0, 3000, 6, 500},
		{2.02, 5.63, 5, 1},
		{1e-4, 3e-4, 5, 5e-5},
		{20, 37, 6, 5},
		{-3, 3, 5, 2},
		{7, 7, 5, 0.5},  // a flat series is widened by 10 %
		{0, 0, 5, 0.5},  // and zero by one
		{10, -10, 5, 5}, // reversed bounds
		{0, 1e9, 6, 2e8},
	} {
		ticks, step := niceTicks(tc.lo, tc.hi, tc.n)
		if math.Abs(step-tc.step) > 1e-12*tc.step {
			t.Errorf("niceTicks(%g, %g, %d) step %g, want %g", tc.lo, tc.hi, tc.n, step, tc.step)
		}
		lo, hi := math.Min(tc.lo, tc.hi), math.Max(tc.lo, tc.hi)
		if len(ticks) < 2 || ticks[0] > lo || ticks[len(ticks)-1] < hi {
			t.Errorf("niceTicks(%g, %g, %d) = %v does not cover the range", tc.lo, tc.hi, tc.n, ticks)
		}
		if len(ticks) > 2*tc.n+1 {
			t.Errorf("niceTicks(%g, %g, %d) = %v: too many ticks", tc.lo, tc.hi, tc.n, ticks)
		}
		for i := 1; i < len(ticks); i++ {
			if d := ticks[i] - ticks[i-1]; math.Abs(d-step) > 1e-9*step {
				t.Errorf("niceTicks(%g, %g, %d) = %v: uneven", tc.lo, tc.hi, tc.n, ticks)
			}
		}
	}
}

func TestTickLabel(t *testing.T) {
	for _, tc := range []struct {
		v, step float64
		want    string
	}{
		{1000, 500, "1000"},
		{0.6000000000000001, 0.2, "0.6"},
		{2.5, 0.5, "2.5"},
		{0.00015, 5e-5, "0.00015"},
		{3e-5, 1e-5, "3e-05"},
		{2e9, 5e8, "2e+09"},
		{0, 0.2, "0.0"},
	} {
		if got := tickLabel(tc.v, tc.step); got != tc.want {
			t.Errorf("tickLabel(%g, %g) = %q, want %q", tc.v, tc.step, got, tc.want)
		}
	}
}

// wellFormed parses s as XML and counts its elements by name.
func wellFormed(t *testing.T, s string) map[string]int {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	count := map[string]int{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return count
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, s)
		}
		if se, ok := tok.(xml.StartElement); ok {
			count[se.Name.Local]++
		}
	}
}

func TestChartSVG(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name      string
		c         chart
		polylines int
		points    []int // points of each polyline
		circles   int
		contains  []string
	}{
		{name: "empty", c: chart{title: "Loss"}, contains: []string{"no data yet"}},
		{name: "one series", c: chart{title: "Loss", series: []series{{name: "loss", color: "#123456",
			x: []float64{0, 1, 2, 3}, y: []float64{5, 4, 3.5, 3}}}},
			polylines: 1, points: []int{4}, contains: []string{`stroke="#123456"`}},
		{name: "non-finite points are skipped", c: chart{series: []series{{x: []float64{0, 1, 2, 3}, y: []float64{5, nan, math.Inf(1), 3}}}},
			polylines: 1, points: []int{2}},
		{name: "a lone point is a dot", c: chart{series: []series{{x: []float64{4}, y: []float64{2}}}},
			polylines: 1, points: []int{1}, circles: 1},
		{name: "two series with a legend and marks", c: chart{series: []series{
			{name: "a", x: []float64{0, 10}, y: []float64{1, 2}}, {name: "b", x: []float64{0, 5, 10}, y: []float64{2, 1, 0}}},
			marks: []mark{{x: 5, label: "g2·3"}, {x: 50, label: "outside"}}},
			polylines: 2, points: []int{2, 3}, contains: []string{">a</text>", ">b</text>", "g2·3"}},
		{name: "text is escaped", c: chart{title: `<script>alert(1)</script>`, xLabel: "a&b",
			series: []series{{name: `"x"`, x: []float64{0, 1}, y: []float64{0, 1}}}},
			polylines: 1, points: []int{2}, contains: []string{"&lt;script&gt;", "a&amp;b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := string(tc.c.svg())
			count := wellFormed(t, s)
			if count["svg"] != 1 || count["polyline"] != tc.polylines || count["circle"] != tc.circles {
				t.Errorf("elements %v, want 1 svg, %d polylines, %d circles", count, tc.polylines, tc.circles)
			}
			d := xml.NewDecoder(strings.NewReader(s))
			i := 0
			for {
				tok, err := d.Token()
				if err != nil {
					break
				}
				se, ok := tok.(xml.StartElement)
				if !ok || se.Name.Local != "polyline" {
					continue
				}
				for _, a := range se.Attr {
					if a.Name.Local == "points" && i < len(tc.points) {
						if n := len(strings.Fields(a.Value)); n != tc.points[i] {
							t.Errorf("polyline %d has %d points, want %d", i, n, tc.points[i])
						}
					}
				}
				i++
			}
			for _, c := range tc.contains {
				if !strings.Contains(s, c) {
					t.Errorf("svg lacks %q", c)
				}
			}
			if strings.Contains(s, "outside") {
				t.Error("a mark outside the x range was drawn")
			}
			if strings.Contains(s, "<script") {
				t.Error("unescaped text")
			}
		})
	}
}

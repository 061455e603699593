package eval

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// smallBlocks makes every similarity block hold at most elems entries for
// the duration of the test.
func smallBlocks(t *testing.T, elems int) {
	old := blockElems
	blockElems = elems
	t.Cleanup(func() { blockElems = old })
}

func unitRows(rng *rand.Rand, n, d int) []float64 {
	x := make([]float64, n*d)
	for i := range n {
		row := x[i*d : (i+1)*d]
		var s float64
		for j := range row {
			row[j] = rng.NormFloat64()
			s += row[j] * row[j]
		}
		for j := range row {
			row[j] /= math.Sqrt(s)
		}
	}
	return x
}

func to32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

func TestRank0(t *testing.T) {
	nan := math.NaN()
	cases := []struct {
		row  []float64
		t    int
		want int
	}{
		{[]float64{0.1, 0.5, 0.3}, 1, 0},
		{[]float64{0.1, 0.5, 0.3}, 0, 2},
		{[]float64{0.5, 0.5, 0.5}, 0, 0},
		{[]float64{0.5, 0.5, 0.5}, 2, 2},
		{[]float64{0.5, 0.9, 0.5}, 2, 2},
		{[]float64{nan, 0.1, 0.2}, 1, 1},  // NaN sorts last
		{[]float64{nan, 0.1, 0.2}, 0, 2},  // a NaN target ranks after every number
		{[]float64{0.3, nan, nan}, 2, 2},  // and after earlier NaNs
		{[]float64{nan, nan, -1.0}, 2, 0}, // a number beats every NaN
	}
	for _, c := range cases {
		if got := rank0(c.row, c.t); got != c.want {
			t.Errorf("rank0(%v, %d) = %d, want %d", c.row, c.t, got, c.want)
		}
	}
	for _, c := range []struct {
		row  []float64
		want int
	}{
		{[]float64{0.1, 0.5, 0.5}, 1},
		{[]float64{nan, 0.2, 0.1}, 1},
		{[]float64{nan, nan}, 0},
		{[]float64{-1}, 0},
	} {
		if got := argmax(c.row); got != c.want {
			t.Errorf("argmax(%v) = %d, want %d", c.row, got, c.want)
		}
	}
}

func TestClassEmbeddings(t *testing.T) {
	r := 1 / math.Sqrt(2)
	cases := []struct {
		name     string
		C, Tm, d int
		templ    []float64
		want     []float64
	}{
		{"mean then renormalise", 1, 2, 2, []float64{1, 0, 0, 1}, []float64{r, r}},
		{"identical templates", 1, 3, 2, []float64{0.6, 0.8, 0.6, 0.8, 0.6, 0.8}, []float64{0.6, 0.8}},
		{"cancelling templates", 1, 2, 2, []float64{1, 0, -1, 0}, []float64{0, 0}},
		{"class-major layout", 2, 2, 3,
			[]float64{1, 0, 0, 1, 0, 0 /* class 1: */, 0, 0, 1, 0, 1, 0},
			[]float64{1, 0, 0, 0, r, r}},
		{"one template, unnormalised input", 2, 1, 2, []float64{3, 4, 0, -2}, []float64{0.6, 0.8, 0, -1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := make([]float64, c.C*c.d)
			for i := range dst {
				dst[i] = 7 // must be overwritten
			}
			ClassEmbeddings(c.templ, c.C, c.Tm, c.d, dst)
			for i := range dst {
				if math.Abs(dst[i]-c.want[i]) > 1e-15 {
					t.Fatalf("got %v, want %v", dst, c.want)
				}
			}
			d32 := make([]float32, len(dst))
			ClassEmbeddings(to32(c.templ), c.C, c.Tm, c.d, d32)
			for i := range d32 {
				if math.Abs(float64(d32[i])-c.want[i]) > 1e-7 {
					t.Fatalf("float32: got %v, want %v", d32, c.want)
				}
			}
		})
	}
}

func TestZeroShotHandMade(t *testing.T) {
	// Class embeddings are the standard basis of R⁷, so an image's scores
	// are its own coordinates (exact in floating point).
	const C = 7
	class := make([]float64, C*C)
	for c := range C {
		class[c*C+c] = 1
	}
	desc := []float64{0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1}
	tie := []float64{0.5, 0.5, 0, 0, 0, 0, 0}
	cases := []struct {
		name       string
		scores     []float64
		label      int
		top1, top5 bool
	}{
		{"best", desc, 0, true, true},
		{"second", desc, 1, false, true},
		{"fifth", desc, 4, false, true},
		{"sixth", desc, 5, false, false},
		{"tie won by the lower index", tie, 0, true, true},
		{"tie lost by the higher index", tie, 1, false, true},
		{"ties below count as ahead", tie, 6, false, false}, // classes 2..5 score 0 too and come first
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			top1, top5 := ZeroShot(c.scores, 1, C, []int{c.label}, class, C)
			if (top1 == 1) != c.top1 || (top5 == 1) != c.top5 {
				t.Errorf("top1 %v top5 %v, want hit %v %v", top1, top5, c.top1, c.top5)
			}
		})
	}
	// All together: accuracies are the fractions of hits.
	var img []float64
	var labels []int
	h1, h5 := 0, 0
	for _, c := range cases {
		img = append(img, c.scores...)
		labels = append(labels, c.label)
		if c.top1 {
			h1++
		}
		if c.top5 {
			h5++
		}
	}
	top1, top5 := ZeroShot(img, len(cases), C, labels, class, C)
	if top1 != float64(h1)/float64(len(cases)) || top5 != float64(h5)/float64(len(cases)) {
		t.Errorf("batch: top1 %v top5 %v, want %v %v", top1, top5, float64(h1)/7, float64(h5)/7)
	}
	// Fewer than five classes: top-5 is always a hit.
	if _, top5 := ZeroShot([]float32{0, 1}, 1, 2, []int{0}, []float32{1, 0, 0, 1}, 2); top5 != 1 {
		t.Errorf("C=2: top5 = %v, want 1", top5)
	}
	if top1, _ := ZeroShot[float32](nil, 0, 2, nil, []float32{1, 0, 0, 1}, 2); !math.IsNaN(top1) {
		t.Errorf("n=0: top1 = %v, want NaN", top1)
	}
}

// naiveRanks is the O(n²d) reference: 0-based rank of candidate i for query
// i, ties by index, in float64.
func naiveRanks(q, c []float64, n, d int) (ranks, top []int) {
	ranks, top = make([]int, n), make([]int, n)
	row := make([]float64, n)
	for i := range n {
		for j := range n {
			var s float64
			for k := range d {
				s += q[i*d+k] * c[j*d+k]
			}
			row[j] = s
		}
		for j := range n {
			if row[j] > row[i] || row[j] == row[i] && j < i {
				ranks[i]++
			}
			if row[j] > row[top[i]] {
				top[i] = j
			}
		}
	}
	return ranks, top
}

func TestZeroShotMatchesNaive(t *testing.T) {
	smallBlocks(t, 50) // 5 rows per block of 10 classes
	rng := rand.New(rand.NewPCG(1, 2))
	const n, d, C = 203, 8, 10
	img, class := unitRows(rng, n, d), unitRows(rng, C, d)
	labels := make([]int, n)
	want1, want5 := 0, 0
	for i := range labels {
		labels[i] = rng.IntN(C)
		scores := make([]float64, C)
		for c := range C {
			for k := range d {
				scores[c] += img[i*d+k] * class[c*d+k]
			}
		}
		r := rank0(scores, labels[i])
		if r == 0 {
			want1++
		}
		if r < 5 {
			want5++
		}
	}
	top1, top5 := ZeroShot(img, n, d, labels, class, C)
	if top1 != float64(want1)/n || top5 != float64(want5)/n {
		t.Errorf("top1 %v top5 %v, want %v %v", top1, top5, float64(want1)/n, float64(want5)/n)
	}
	if top1 <= 0 || top5 <= top1 {
		t.Errorf("degenerate test data: top1 %v top5 %v", top1, top5)
	}
}

func TestRetrievalHandMade(t *testing.T) {
	// Texts are the standard basis, so S = img·txtᵀ is img itself (exact):
	//   S = [0.9 0.1 0.2 0.0]   image 0: its text ranks 1st
	//       [0.8 0.5 0.3 0.1]   image 1: 2nd (0.8 is higher)
	//       [0.5 0.5 0.5 0.1]   image 2: 3rd (ties with texts 0 and 1, which come first)
	//       [0.4 0.3 0.2 0.1]   image 3: 4th
	// Text j ranks column j: text 0 → 1st; text 1 → 1st (ties with the later
	// image 2); text 2 → 1st; text 3 → 3rd (ties with images 1 and 2).
	img := []float64{
		0.9, 0.1, 0.2, 0.0,
		0.8, 0.5, 0.3, 0.1,
		0.5, 0.5, 0.5, 0.1,
		0.4, 0.3, 0.2, 0.1,
	}
	txt := []float64{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}
	labels := []int{0, 0, 1, 1}
	got := Retrieval(img, txt, 4, 4, labels)
	want := RetrievalResult{
		// 0-based ranks 0,1,2,3: mean 1.5 → 2.5; median 1.5 → floor 1 → 2.
		I2T: Directional{R1: 0.25, R5: 1, R10: 1, MeanRank: 2.5, MedianRank: 2},
		// 0-based ranks 0,0,0,2: mean 0.5 → 1.5; median 0 → 1.
		T2I: Directional{R1: 0.75, R5: 1, R10: 1, MeanRank: 1.5, MedianRank: 1},
		// Top texts of the images: 0, 0, 0 (tie), 0 → classes 0,0,0,0 vs 0,0,1,1.
		ClassR1I2T: 0.5,
		// Top images of the texts: 0, 1 (tie with 2), 2, 1 (tie) → classes 0,0,1,0 vs 0,0,1,1.
		ClassR1T2I: 0.75,
	}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	got32 := Retrieval(to32(img), to32(txt), 4, 4, labels)
	if got32 != want {
		t.Errorf("float32: got %+v", got32)
	}
	noLabels := Retrieval(img, txt, 4, 4, nil)
	if !math.IsNaN(noLabels.ClassR1I2T) || !math.IsNaN(noLabels.ClassR1T2I) || noLabels.I2T != want.I2T {
		t.Errorf("without labels: %+v", noLabels)
	}
}

func TestSummariseRanks(t *testing.T) {
	cases := []struct {
		ranks []int
		want  Directional
	}{
		{[]int{0}, Directional{1, 1, 1, 1, 1}},
		{[]int{4, 9, 10, 0}, Directional{R1: 0.25, R5: 0.5, R10: 0.75, MeanRank: 6.75, MedianRank: 7}}, // median (4+9)/2 = 6.5
		{[]int{3, 1, 2}, Directional{R1: 0, R5: 1, R10: 1, MeanRank: 3, MedianRank: 3}},
	}
	for _, c := range cases {
		if got := summarise(c.ranks); got != c.want {
			t.Errorf("summarise(%v) = %+v, want %+v", c.ranks, got, c.want)
		}
	}
	if got := summarise(nil); !math.IsNaN(got.R1) || !math.IsNaN(got.MedianRank) {
		t.Errorf("no queries: %+v, want NaN", got)
	}
}

func TestRetrievalMatchesNaive(t *testing.T) {
	smallBlocks(t, 1000) // 7 rows per block of 150
	rng := rand.New(rand.NewPCG(3, 4))
	const n, d = 150, 6
	img := unitRows(rng, n, d)
	txt := make([]float64, n*d) // noisy copies of the images
	for i := range txt {
		txt[i] = img[i] + 0.6*rng.NormFloat64()/math.Sqrt(d)
	}
	labels := make([]int, n)
	for i := range labels {
		labels[i] = i % 5
	}
	got := Retrieval(img, txt, n, d, labels)
	for _, dir := range []struct {
		name   string
		q, c   []float64
		got    Directional
		gotCls float64
	}{
		{"i2t", img, txt, got.I2T, got.ClassR1I2T},
		{"t2i", txt, img, got.T2I, got.ClassR1T2I},
	} {
		ranks, top := naiveRanks(dir.q, dir.c, n, d)
		want := summarise(ranks)
		if dir.got != want {
			t.Errorf("%s: got %+v, want %+v", dir.name, dir.got, want)
		}
		hits := 0
		for i := range n {
			if labels[top[i]] == labels[i] {
				hits++
			}
		}
		if dir.gotCls != float64(hits)/n {
			t.Errorf("%s: class R@1 %v, want %v", dir.name, dir.gotCls, float64(hits)/n)
		}
		if want.R1 == 0 || want.R10 == 1 || want.R1 == want.R5 {
			t.Errorf("%s: degenerate test data %+v", dir.name, want)
		}
	}
}

func TestAlignmentUniformityKnown(t *testing.T) {
	e := func(d int, js ...int) []float64 { // rows e_j of R^d
		x := make([]float64, len(js)*d)
		for i, j := range js {
			x[i*d+j] = 1
		}
		return x
	}
	neg := func(x []float64) []float64 {
		y := slices.Clone(x)
		for i := range y {
			y[i] = -y[i]
		}
		return y
	}
	cases := []struct {
		name           string
		x, y           []float64
		n, d           int
		align, uniform float64
	}{
		{"identical pairs, collapsed", e(3, 0, 0, 0), e(3, 0, 0, 0), 3, 3, 0, 0},
		{"antipodal pairs", e(2, 0, 1), neg(e(2, 0, 1)), 2, 2, 4, -4}, // ‖e0 − e1‖² = 2
		{"orthogonal pairs", e(4, 0, 1, 2, 3), e(4, 1, 2, 3, 0), 4, 4, 2, -4},
		{"two antipodal points", []float64{1, 0, -1, 0}, []float64{1, 0, -1, 0}, 2, 2, 0, -8},
		// Three points at 120°: ‖x_i − x_j‖² = 3.
		{"triangle", []float64{1, 0, -0.5, math.Sqrt(3) / 2, -0.5, -math.Sqrt(3) / 2}, []float64{1, 0, -0.5, math.Sqrt(3) / 2, -0.5, -math.Sqrt(3) / 2}, 3, 2, 0, -6},
		// Two clusters of two points: 2 of the 6 ordered pairs... of the 12
		// ordered pairs i≠j, 4 are at distance 0 and 8 at ‖e0 − e1‖² = 2.
		{"two clusters", e(2, 0, 0, 1, 1), e(2, 0, 0, 1, 1), 4, 2, 0, math.Log((4 + 8*math.Exp(-4)) / 12)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, u := AlignmentUniformity(c.x, c.y, c.n, c.d)
			if math.Abs(a-c.align) > 1e-12 || math.Abs(u-c.uniform) > 1e-12 {
				t.Errorf("got (%v, %v), want (%v, %v)", a, u, c.align, c.uniform)
			}
			a32, u32 := AlignmentUniformity(to32(c.x), to32(c.y), c.n, c.d)
			if math.Abs(a32-c.align) > 1e-6 || math.Abs(u32-c.uniform) > 1e-5 {
				t.Errorf("float32: got (%v, %v), want (%v, %v)", a32, u32, c.align, c.uniform)
			}
		})
	}
	if _, u := AlignmentUniformity([]float64{1, 0}, []float64{1, 0}, 1, 2); !math.IsNaN(u) {
		t.Errorf("one row: uniform = %v, want NaN", u)
	}
	// Far-apart, unnormalised points: exp(−2·400²) underflows, the log-sum-exp does not.
	if _, u := AlignmentUniformity([]float64{200, -200}, []float64{0, 0}, 2, 1); u != -2*400*400 {
		t.Errorf("far points: uniform = %v, want %v", u, -2*400*400)
	}
}

func TestUniformityUsesFirst4096Rows(t *testing.T) {
	smallBlocks(t, 1<<20) // 256 rows per block
	// Rows 0..4095 all equal e0, later rows e1: only the collapsed prefix
	// counts, so uniformity is log 1 = 0.
	const n, d = uniformRows + 5, 2
	x := make([]float32, n*d)
	for i := range n {
		if i < uniformRows {
			x[i*d] = 1
		} else {
			x[i*d+1] = 1
		}
	}
	if _, u := AlignmentUniformity(x, x, n, d); u != 0 {
		t.Errorf("uniform = %v, want 0 from the first 4096 rows", u)
	}
}

func TestUniformityMatchesNaive(t *testing.T) {
	smallBlocks(t, 200)
	rng := rand.New(rand.NewPCG(5, 6))
	const n, d = 90, 5
	x, y := unitRows(rng, n, d), unitRows(rng, n, d)
	var sa, su float64
	for i := range n {
		for k := range d {
			sa += (x[i*d+k] - y[i*d+k]) * (x[i*d+k] - y[i*d+k])
		}
		for j := range n {
			if j == i {
				continue
			}
			var d2 float64
			for k := range d {
				d2 += (x[i*d+k] - x[j*d+k]) * (x[i*d+k] - x[j*d+k])
			}
			su += math.Exp(-2 * d2)
		}
	}
	wantA, wantU := sa/n, math.Log(su/(n*(n-1)))
	a, u := AlignmentUniformity(x, y, n, d)
	if math.Abs(a-wantA) > 1e-12 || math.Abs(u-wantU) > 1e-12 {
		t.Errorf("got (%v, %v), want (%v, %v)", a, u, wantA, wantU)
	}
}

func TestShapePanics(t *testing.T) {
	cases := []struct {
		name, msg string
		f         func()
	}{
		{"zero-shot img", "img has 3 elements", func() { ZeroShot(make([]float32, 3), 2, 2, []int{0, 0}, make([]float32, 4), 2) }},
		{"zero-shot label", "label 2 of item 1", func() { ZeroShot(make([]float32, 4), 2, 2, []int{0, 2}, make([]float32, 4), 2) }},
		{"retrieval txt", "txt has 2 elements", func() { Retrieval(make([]float64, 4), make([]float64, 2), 2, 2, nil) }},
		{"retrieval labels", "1 labels for 2 items", func() { Retrieval(make([]float64, 4), make([]float64, 4), 2, 2, []int{0}) }},
		{"class embeddings", "dst has 1 elements", func() { ClassEmbeddings(make([]float32, 4), 1, 2, 2, make([]float32, 1)) }},
		{"alignment", "y has 0 elements", func() { AlignmentUniformity(make([]float32, 4), nil, 2, 2) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, c.msg) {
					t.Errorf("panic %v, want one containing %q", r, c.msg)
				}
			}()
			c.f()
		})
	}
}

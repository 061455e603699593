package dataset

import (
	"math"
	"slices"
	"strings"
	"testing"
)

// blob is an h×w image with a bright square of side s whose top-left
// corner is (x0, y0).
func blob(h, w, x0, y0, s int) []byte {
	img := make([]byte, h*w)
	for y := y0; y < y0+s; y++ {
		for x := x0; x < x0+s; x++ {
			img[y*w+x] = 255
		}
	}
	return img
}

// moments returns the mass and the centroid of an image.
func moments[T float32 | float64](img []T, h, w int) (mass, cx, cy float64) {
	for y := range h {
		for x := range w {
			v := float64(img[y*w+x])
			mass += v
			cx += v * float64(x)
			cy += v * float64(y)
		}
	}
	return mass, cx / mass, cy / mass
}

func TestPixels(t *testing.T) {
	dst := make([]float32, 3)
	Pixels([]byte{0, 51, 255}, dst)
	if !slices.Equal(dst, []float32{0, 0.2, 1}) {
		t.Fatalf("Pixels = %v", dst)
	}
}

func TestAugmentIdentity(t *testing.T) {
	src := seq(28 * 28)
	want := make([]float64, len(src))
	Pixels(src, want)
	got := make([]float64, len(src))
	for view := range 3 {
		Augment(IdentityAugConfig(), 1, 2, 3, view, src, 28, 28, got)
		if !slices.Equal(got, want) {
			t.Fatal("the identity configuration changes the image")
		}
	}
	// A non-square image exercises the row/column bookkeeping.
	src = seq(5 * 9)
	want, got = make([]float64, 45), make([]float64, 45)
	Pixels(src, want)
	Augment(IdentityAugConfig(), 1, 2, 3, 0, src, 5, 9, got)
	if !slices.Equal(got, want) {
		t.Fatal("the identity configuration changes a 5×9 image")
	}
}

func TestAugmentKey(t *testing.T) {
	cfg := DefaultAugConfig()
	src := blob(28, 28, 8, 6, 12)
	view := func(seed uint64, step int64, sample, v int) []float32 {
		d := make([]float32, 28*28)
		Augment(cfg, seed, step, sample, v, src, 28, 28, d)
		return d
	}
	a := view(1, 10, 5, 0)
	if !slices.Equal(a, view(1, 10, 5, 0)) {
		t.Fatal("Augment is not a function of its key")
	}
	for name, b := range map[string][]float32{
		"view":   view(1, 10, 5, 1),
		"sample": view(1, 10, 6, 0),
		"step":   view(1, 11, 5, 0),
		"seed":   view(2, 10, 5, 0),
	} {
		if slices.Equal(a, b) {
			t.Errorf("changing the %s does not change the view", name)
		}
	}
}

// TestAugmentPrecisions checks that float32 and float64 views are the same
// view: computed in float64 and rounded once.
func TestAugmentPrecisions(t *testing.T) {
	src := blob(28, 28, 3, 10, 9)
	d32, d64 := make([]float32, 784), make([]float64, 784)
	Augment(DefaultAugConfig(), 4, 4, 4, 1, src, 28, 28, d32)
	Augment(DefaultAugConfig(), 4, 4, 4, 1, src, 28, 28, d64)
	for i := range d32 {
		if d32[i] != float32(d64[i]) {
			t.Fatalf("pixel %d: float32 %g, float64 %g", i, d32[i], d64[i])
		}
	}
}

// TestAugmentGeometry checks each transform on its own against what it
// must do to a bright square.
func TestAugmentGeometry(t *testing.T) {
	const h, w = 28, 28
	src := blob(h, w, 10, 10, 8) // centroid (13.5, 13.5), mass 64
	id := IdentityAugConfig()
	for _, tc := range []struct {
		name  string
		cfg   func(c *AugConfig)
		check func(t *testing.T, mass, cx, cy float64)
	}{
		{"translate", func(c *AugConfig) { c.MaxTranslate = 3 }, func(t *testing.T, mass, cx, cy float64) {
			// Translation moves the centroid by at most 3 px per axis and
			// keeps the mass (bilinear weights sum to one).
			if math.Abs(mass-64) > 1e-6 || math.Abs(cx-13.5) > 3+1e-9 || math.Abs(cy-13.5) > 3+1e-9 {
				t.Errorf("mass %.3f centroid (%.2f, %.2f)", mass, cx, cy)
			}
		}},
		{"rotate", func(c *AugConfig) { c.MaxRotate = 90 }, func(t *testing.T, mass, cx, cy float64) {
			// Rotation about the image centre keeps a centred square
			// centred and its area (within interpolation loss).
			if math.Abs(mass-64) > 8 || math.Abs(cx-13.5) > 0.05 || math.Abs(cy-13.5) > 0.05 {
				t.Errorf("mass %.3f centroid (%.2f, %.2f)", mass, cx, cy)
			}
		}},
		{"crop", func(c *AugConfig) { c.CropScale = [2]float64{0.25, 0.5} }, func(t *testing.T, mass, cx, cy float64) {
			// Cropping a quarter to a half of the area and resizing it to
			// the full image enlarges what is kept by 2 to 4 times.
			if mass > 4*64+8 {
				t.Errorf("mass %.3f after a crop of at least a quarter", mass)
			}
		}},
		{"contrast", func(c *AugConfig) { c.Contrast = 0.5 }, func(t *testing.T, mass, cx, cy float64) {
			if mass < 0.5*64-1e-9 || mass > 1.5*64+1e-9 || math.Abs(cx-13.5) > 1e-9 {
				t.Errorf("mass %.3f centroid (%.2f, %.2f)", mass, cx, cy)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := id
			tc.cfg(&cfg)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			changed := 0
			for sample := range 50 {
				dst := make([]float64, h*w)
				Augment(cfg, 7, 0, sample, 0, src, h, w, dst)
				mass, cx, cy := moments(dst, h, w)
				tc.check(t, mass, cx, cy)
				want := make([]float64, h*w)
				Pixels(src, want)
				if !slices.Equal(dst, want) {
					changed++
				}
			}
			if changed < 45 {
				t.Errorf("only %d of 50 views differ from the image", changed)
			}
		})
	}
}

func TestAugmentNoiseAndErase(t *testing.T) {
	const h, w = 28, 28
	src := make([]byte, h*w)
	for i := range src {
		src[i] = 255
	}
	cfg := IdentityAugConfig()
	cfg.Noise = 0.1
	dst := make([]float64, h*w)
	var sum, sq float64
	const views = 20
	for v := range views {
		Augment(cfg, 1, 0, 0, v, src, h, w, dst)
		for _, x := range dst {
			sum += x - 1
			sq += (x - 1) * (x - 1)
		}
	}
	n := float64(views * h * w)
	if mean, sd := sum/n, math.Sqrt(sq/n); math.Abs(mean) > 0.01 || math.Abs(sd-0.1) > 0.01 {
		t.Errorf("noise mean %.4f sd %.4f, want 0 and 0.1", mean, sd)
	}

	cfg = IdentityAugConfig()
	cfg.EraseProb = 0.5
	erased := 0
	for v := range 200 {
		Augment(cfg, 1, 0, 0, v, src, h, w, dst)
		zeros := 0
		for _, x := range dst {
			if x == 0 {
				zeros++
			}
		}
		if zeros > 0 {
			erased++
			// An erased area is 2% to 10% of the image (rounding of the
			// sides aside).
			if f := float64(zeros) / (h * w); f < 0.01 || f > 0.14 {
				t.Errorf("view %d: %.3f of the image erased", v, f)
			}
		}
	}
	if erased < 70 || erased > 130 {
		t.Errorf("%d of 200 views erased with probability 0.5", erased)
	}
}

func TestAugmentNoAlloc(t *testing.T) {
	src := blob(28, 28, 5, 5, 10)
	dst := make([]float32, 784)
	cfg := DefaultAugConfig()
	cfg.EraseProb = 1
	allocs := testing.AllocsPerRun(20, func() {
		Augment(cfg, 1, 2, 3, 0, src, 28, 28, dst)
	})
	if allocs != 0 {
		t.Errorf("Augment allocates %.1f times per view", allocs)
	}
}

func TestAugConfigValidate(t *testing.T) {
	if err := DefaultAugConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := IdentityAugConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		field string
		set   func(c *AugConfig)
	}{
		{"CropScale", func(c *AugConfig) { c.CropScale = [2]float64{0, 1} }},
		{"CropScale", func(c *AugConfig) { c.CropScale = [2]float64{0.9, 0.5} }},
		{"CropScale", func(c *AugConfig) { c.CropScale = [2]float64{0.5, 1.5} }},
		{"CropRatio", func(c *AugConfig) { c.CropRatio = [2]float64{-1, 1} }},
		{"MaxTranslate", func(c *AugConfig) { c.MaxTranslate = math.NaN() }},
		{"MaxRotate", func(c *AugConfig) { c.MaxRotate = 200 }},
		{"Contrast", func(c *AugConfig) { c.Contrast = -0.1 }},
		{"Noise", func(c *AugConfig) { c.Noise = math.Inf(1) }},
		{"EraseProb", func(c *AugConfig) { c.EraseProb = 1.5 }},
		{"EraseScale", func(c *AugConfig) { c.EraseScale = [2]float64{0.2, 0.1} }},
		{"EraseRatio", func(c *AugConfig) { c.EraseRatio = [2]float64{0, 1} }},
	} {
		c := DefaultAugConfig()
		tc.set(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %v does not name the field", tc.field, err)
		}
	}
}

func TestAugmentMNIST(t *testing.T) {
	s := loadMNIST(t)
	// Views of a real digit keep most of its ink and stay in a sane range.
	dst := make([]float32, 784)
	orig := make([]float32, 784)
	for i := range 20 {
		Pixels(s.Train.Image(i), orig)
		m0, _, _ := moments(orig, 28, 28)
		Augment(DefaultAugConfig(), 1, 0, i, 0, s.Train.Image(i), 28, 28, dst)
		lo, hi := slices.Min(dst), slices.Max(dst)
		if lo < -0.5 || hi > 2 {
			t.Errorf("image %d: view values in [%g, %g]", i, lo, hi)
		}
		var ink float64
		for _, v := range dst {
			ink += max(float64(v), 0)
		}
		if ink < 0.3*m0 {
			t.Errorf("image %d: view keeps %.0f of %.0f ink", i, ink, m0)
		}
	}
}

func BenchmarkAugment(b *testing.B) {
	src := blob(28, 28, 5, 5, 10)
	dst := make([]float32, 784)
	cfg := DefaultAugConfig()
	for i := 0; b.Loop(); i++ {
		Augment(cfg, 1, 2, i, 0, src, 28, 28, dst)
	}
}

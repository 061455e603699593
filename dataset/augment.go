package dataset

import (
	"fmt"
	"math"

	"github.com/infonce/infonce/gemm"
)

// AugConfig sets the SimCLR-style augmentations of small grey images. All
// ranges are inclusive [lo, hi] and drawn uniformly (aspect ratios
// log-uniformly).
type AugConfig struct {
	// CropScale is the range of the crop's area as a fraction of the image
	// (random resized crop); the crop is resized to the full output.
	CropScale [2]float64
	// CropRatio is the range of the crop's aspect ratio (width/height).
	CropRatio [2]float64
	// MaxTranslate shifts the content by up to this many output pixels in x
	// and in y.
	MaxTranslate float64
	// MaxRotate rotates by up to this many degrees either way.
	MaxRotate float64
	// Contrast scales intensities by a factor in [1-Contrast, 1+Contrast];
	// Brightness then adds an offset in [-Brightness, Brightness].
	Contrast, Brightness float64
	// Noise is the standard deviation of the Gaussian noise added to every
	// pixel (intensities are in [0, 1]).
	Noise float64
	// EraseProb is the probability of random erasing: a rectangle whose area
	// fraction is in EraseScale and whose aspect ratio is in EraseRatio is
	// set to 0.
	EraseProb  float64
	EraseScale [2]float64
	EraseRatio [2]float64
}

// DefaultAugConfig returns augmentations that suit 28×28 digits: SimCLR's
// crop, but gentler (a digit cropped to 8% of its area is no longer a
// digit), a few pixels of shift, ±15° of rotation, mild contrast and noise,
// and erasing of a small patch in a quarter of the views. There is no
// horizontal flip: a mirrored digit is another symbol.
func DefaultAugConfig() AugConfig {
	return AugConfig{
		CropScale:    [2]float64{0.6, 1},
		CropRatio:    [2]float64{3.0 / 4, 4.0 / 3},
		MaxTranslate: 2,
		MaxRotate:    15,
		Contrast:     0.3,
		Brightness:   0.1,
		Noise:        0.05,
		EraseProb:    0.25,
		EraseScale:   [2]float64{0.02, 0.1},
		EraseRatio:   [2]float64{0.3, 3.3},
	}
}

// IdentityAugConfig returns the configuration that changes nothing:
// Augment then writes exactly Pixels of the image.
func IdentityAugConfig() AugConfig {
	return AugConfig{
		CropScale:  [2]float64{1, 1},
		CropRatio:  [2]float64{1, 1},
		EraseScale: [2]float64{0.02, 0.1},
		EraseRatio: [2]float64{0.3, 3.3},
	}
}

// Validate checks every field and names the first one that is out of range.
func (c AugConfig) Validate() error {
	rng := func(name string, r [2]float64, lo, hi float64, openLo bool) error {
		okLo := r[0] >= lo
		if openLo {
			okLo = r[0] > lo
		}
		if !okLo || !(r[1] >= r[0]) || !(r[1] <= hi) {
			return fmt.Errorf("dataset: augmentation %s = %v: want lo ≤ hi within (%g, %g]", name, r, lo, hi)
		}
		return nil
	}
	nonneg := func(name string, v, hi float64) error {
		if !(v >= 0 && v <= hi) {
			return fmt.Errorf("dataset: augmentation %s = %g: want a value in [0, %g]", name, v, hi)
		}
		return nil
	}
	for _, err := range []error{
		rng("CropScale", c.CropScale, 0, 1, true),
		rng("CropRatio", c.CropRatio, 0, math.MaxFloat64, true),
		nonneg("MaxTranslate", c.MaxTranslate, 1e6),
		nonneg("MaxRotate", c.MaxRotate, 180),
		nonneg("Contrast", c.Contrast, 1),
		nonneg("Brightness", c.Brightness, 1),
		nonneg("Noise", c.Noise, 10),
		nonneg("EraseProb", c.EraseProb, 1),
		rng("EraseScale", c.EraseScale, 0, 1, true),
		rng("EraseRatio", c.EraseRatio, 0, math.MaxFloat64, true),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// Pixels writes the bytes of src scaled to [0, 1] (x/255) into dst, which
// must have the same length.
func Pixels[T gemm.Float](src []byte, dst []T) {
	if len(dst) != len(src) {
		panic(fmt.Sprintf("dataset: Pixels: len(dst) = %d, len(src) = %d", len(dst), len(src)))
	}
	switch d := any(dst).(type) {
	case []float32:
		for i, b := range src {
			d[i] = pixelScale32[b]
		}
	case []float64:
		for i, b := range src {
			d[i] = pixelScale64[b]
		}
	}
}

// pixelScale32 and pixelScale64 hold x/255 for every byte x, rounded once
// from float64, so that Pixels is a table look-up per pixel.
var pixelScale32, pixelScale64 = func() (t32 [256]float32, t64 [256]float64) {
	for x := range 256 {
		t64[x] = float64(x) / 255
		t32[x] = float32(t64[x])
	}
	return t32, t64
}()

// Augment writes one augmented view of the h×w grey image src into dst
// (both h·w long), intensities about [0, 1] (noise and brightness may take
// them slightly outside).
//
// The view is a pure function of the key (seed, step, sample, view) and cfg:
// pass the sample's dataset index (or its position in the global batch), not
// a rank-local position, and every rank draws the same views whatever the
// number of ranks. It does not allocate.
//
// The geometry is one affine map from output to source coordinates,
//
//	p_src = c + R(θ) · diag(c_w/w, c_h/h) · (p_out − o − t),
//
// with o the output centre, t the translation, θ the rotation and a crop of
// c_w×c_h centred at c (random resized crop); the source is sampled
// bilinearly with zeros outside. Then intensity x ↦ a·x + b (contrast and
// brightness), Gaussian noise, and random erasing. The parameters of a view
// are drawn in a fixed order whatever cfg says (the noise last), so changing
// one setting leaves the others' draws alone.
func Augment[T gemm.Float](cfg AugConfig, seed uint64, step int64, sample int, view int, src []byte, h, w int, dst []T) {
	n := h * w
	if h < 1 || w < 1 || len(src) != n || len(dst) != n {
		panic(fmt.Sprintf("dataset: Augment: %d×%d image with len(src) = %d, len(dst) = %d", h, w, len(src), len(dst)))
	}
	r := newRNG(domainAugment, seed, uint64(step), uint64(sample), uint64(view))
	fw, fh := float64(w), float64(h)

	// Random resized crop: area fraction s, aspect ratio ρ = c_w/c_h.
	s := r.between(cfg.CropScale[0], cfg.CropScale[1])
	rho := math.Exp(r.between(math.Log(cfg.CropRatio[0]), math.Log(cfg.CropRatio[1])))
	cw := math.Min(fw*math.Sqrt(s*rho), fw)
	ch := math.Min(fh*math.Sqrt(s/rho), fh)
	cx := r.between(cw/2, fw-cw/2)
	cy := r.between(ch/2, fh-ch/2)
	tx := r.between(-cfg.MaxTranslate, cfg.MaxTranslate)
	ty := r.between(-cfg.MaxTranslate, cfg.MaxTranslate)
	theta := r.between(-cfg.MaxRotate, cfg.MaxRotate) * math.Pi / 180
	contrast := r.between(1-cfg.Contrast, 1+cfg.Contrast)
	bright := r.between(-cfg.Brightness, cfg.Brightness)
	erase := r.uniform() < cfg.EraseProb
	ea := r.between(cfg.EraseScale[0], cfg.EraseScale[1]) * fw * fh
	er := math.Exp(r.between(math.Log(cfg.EraseRatio[0]), math.Log(cfg.EraseRatio[1])))
	eh := clampInt(int(math.Round(math.Sqrt(ea/er))), 0, h)
	ew := clampInt(int(math.Round(math.Sqrt(ea*er))), 0, w)
	ey := r.intn(h - eh + 1)
	ex := r.intn(w - ew + 1)

	// A = R(θ)·diag(c_w/w, c_h/h).
	sin, cos := math.Sincos(theta)
	a11, a12 := cos*cw/fw, -sin*ch/fh
	a21, a22 := sin*cw/fw, cos*ch/fh
	for y := range h {
		uy := float64(y) + 0.5 - fh/2 - ty
		for x := range w {
			ux := float64(x) + 0.5 - fw/2 - tx
			// Source position in pixel-index coordinates (pixel centres
			// at integers).
			sx := cx + a11*ux + a12*uy - 0.5
			sy := cy + a21*ux + a22*uy - 0.5
			v := bilinear(src, h, w, sx, sy)/255*contrast + bright
			if cfg.Noise > 0 {
				v += cfg.Noise * r.normal()
			}
			dst[y*w+x] = T(v)
		}
	}
	if erase {
		for y := ey; y < ey+eh; y++ {
			clear(dst[y*w+ex : y*w+ex+ew])
		}
	}
}

// bilinear samples the h×w image src at (x, y) (pixel centres at integer
// coordinates), reading zeros outside it.
func bilinear(src []byte, h, w int, x, y float64) float64 {
	fx, fy := math.Floor(x), math.Floor(y)
	if !(fx >= -1 && fx < float64(w) && fy >= -1 && fy < float64(h)) {
		return 0 // also NaN
	}
	x0, y0 := int(fx), int(fy)
	ax, ay := x-fx, y-fy
	at := func(i, j int) float64 {
		if i < 0 || i >= w || j < 0 || j >= h {
			return 0
		}
		return float64(src[j*w+i])
	}
	if x0 >= 0 && x0+1 < w && y0 >= 0 && y0+1 < h {
		k := y0*w + x0
		top := float64(src[k])*(1-ax) + float64(src[k+1])*ax
		bot := float64(src[k+w])*(1-ax) + float64(src[k+w+1])*ax
		return top*(1-ay) + bot*ay
	}
	top := at(x0, y0)*(1-ax) + at(x0+1, y0)*ax
	bot := at(x0, y0+1)*(1-ax) + at(x0+1, y0+1)*ax
	return top*(1-ay) + bot*ay
}

func clampInt(v, lo, hi int) int { return max(lo, min(v, hi)) }

package dataset

import (
	"fmt"
	"math"
)

// domainView keeps the random stream of image views apart from the others.
const domainView uint64 = 0x7669657773696d63 // "viewsimc"

// ViewConfig sets how a Picture becomes one S×S view: a float32 CHW row,
// normalised per channel. With Train false the view is the evaluation
// transform (resize the shorter side to S, centre crop S×S); with Train
// true it is SimCLR's augmentation (Chen et al. 2020, appendix A): random
// resized crop, horizontal flip, colour jitter, random grayscale and
// Gaussian blur. Probabilities are in [0, 1].
type ViewConfig struct {
	// Size is S, the side of the square output.
	Size int
	// Channels is the number of output channels, 1 or 3. A grey picture is
	// promoted to RGB for 3; an RGB picture is reduced to its luma for 1.
	Channels int
	// Background of transparent pixels is applied when decoding, not here.

	Train bool

	// Scale is the range of the crop's area as a fraction of the image, and
	// Ratio the range of its aspect ratio w/h (drawn log-uniformly), as in
	// torchvision's RandomResizedCrop (defaults [0.08, 1] and [3/4, 4/3]).
	Scale, Ratio [2]float64
	// FlipProb is the probability of a horizontal flip.
	FlipProb float64

	// JitterProb is the probability of colour jitter; the factors are drawn
	// uniformly from [max(0, 1−s), 1+s] for brightness, contrast and
	// saturation, and the hue shift from [−Hue, Hue] (in turns, ≤ 0.5). The
	// four adjustments are applied in a random order, as torchvision does.
	JitterProb                            float64
	Brightness, Contrast, Saturation, Hue float64
	GrayProb                              float64
	BlurProb                              float64
	BlurSigma                             [2]float64
	// BlurKernel is the side of the blur kernel as a fraction of S (SimCLR:
	// 10 %); the kernel side is odd and at least 3.
	BlurKernel float64

	// Mean and Std normalise channel c: (x − Mean[c]) / Std[c], x in [0, 1].
	// Only the first Channels entries are used.
	Mean, Std [3]float32
}

// ImageNet's channel statistics, the usual normalisation.
var (
	ImageNetMean = [3]float32{0.485, 0.456, 0.406}
	ImageNetStd  = [3]float32{0.229, 0.224, 0.225}
)

// SimCLRViewConfig is SimCLR's training augmentation at side size: random
// resized crop with scale [0.08, 1] and ratio [3/4, 4/3], flip with
// probability 0.5, colour jitter (0.4, 0.4, 0.4, 0.1) with probability
// 0.8, grayscale with probability 0.2, and Gaussian blur with probability
// 0.5 and σ in [0.1, 2]; ImageNet normalisation.
func SimCLRViewConfig(size int) ViewConfig {
	return ViewConfig{
		Size: size, Channels: 3, Train: true,
		Scale: [2]float64{0.08, 1}, Ratio: [2]float64{3.0 / 4, 4.0 / 3},
		FlipProb:   0.5,
		JitterProb: 0.8, Brightness: 0.4, Contrast: 0.4, Saturation: 0.4, Hue: 0.1,
		GrayProb: 0.2,
		BlurProb: 0.5, BlurSigma: [2]float64{0.1, 2}, BlurKernel: 0.1,
		Mean: ImageNetMean, Std: ImageNetStd,
	}
}

// EvalViewConfig is the evaluation transform at side size: shorter side to
// S, centre crop, ImageNet normalisation.
func EvalViewConfig(size int) ViewConfig {
	c := SimCLRViewConfig(size)
	c.Train = false
	return c
}

// Validate names the first field out of range.
func (c ViewConfig) Validate() error {
	bad := func(name string, v any) error {
		return fmt.Errorf("dataset: view %s = %v is out of range", name, v)
	}
	prob := func(p float64) bool { return p >= 0 && p <= 1 }
	switch {
	case c.Size < 1 || c.Size > 1<<13:
		return bad("Size", c.Size)
	case c.Channels != 1 && c.Channels != 3:
		return bad("Channels (want 1 or 3)", c.Channels)
	case !(c.Scale[0] > 0 && c.Scale[0] <= c.Scale[1] && c.Scale[1] <= 1) && c.Train:
		return bad("Scale (want 0 < lo ≤ hi ≤ 1)", c.Scale)
	case !(c.Ratio[0] > 0 && c.Ratio[0] <= c.Ratio[1]) && c.Train:
		return bad("Ratio (want 0 < lo ≤ hi)", c.Ratio)
	case !prob(c.FlipProb) || !prob(c.JitterProb) || !prob(c.GrayProb) || !prob(c.BlurProb):
		return bad("probabilities", [4]float64{c.FlipProb, c.JitterProb, c.GrayProb, c.BlurProb})
	case !(c.Brightness >= 0) || !(c.Contrast >= 0) || !(c.Saturation >= 0) || !(c.Hue >= 0 && c.Hue <= 0.5):
		return bad("jitter strengths", [4]float64{c.Brightness, c.Contrast, c.Saturation, c.Hue})
	case c.BlurProb > 0 && !(c.BlurSigma[0] > 0 && c.BlurSigma[0] <= c.BlurSigma[1]):
		return bad("BlurSigma", c.BlurSigma)
	case !(c.BlurKernel >= 0 && c.BlurKernel <= 1):
		return bad("BlurKernel", c.BlurKernel)
	}
	for ch := range c.Channels {
		if !(c.Std[ch] > 0) || math.IsInf(float64(c.Mean[ch]), 0) || math.IsNaN(float64(c.Mean[ch])) {
			return bad("Mean/Std", [2][3]float32{c.Mean, c.Std})
		}
	}
	return nil
}

// ViewLen is the number of floats of one view: Channels·Size·Size.
func (c ViewConfig) ViewLen() int { return c.Channels * c.Size * c.Size }

// View writes view number view of picture p into dst (ViewLen floats, CHW:
// channel c of pixel (y, x) at dst[(c·S+y)·S+x]). Every random choice is a
// pure function of (seed, epoch, sample, view), so any rank computes the
// same view. p must satisfy p.Validate.
func View(c ViewConfig, p Picture, seed uint64, epoch, sample, view int, dst []float32) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if len(dst) != c.ViewLen() {
		return fmt.Errorf("dataset: view of %d floats, want %d", len(dst), c.ViewLen())
	}
	r := newRNG(domainView, seed, uint64(epoch), uint64(sample), uint64(view))
	S := c.Size

	// Geometry: the crop box in source pixels, then the resampling of the
	// box to S×S (area averaging when shrinking, bilinear when enlarging).
	var x0, y0, bw, bh float64
	flip := false
	if c.Train {
		x0, y0, bw, bh = randomResizedCrop(&r, p.H, p.W, c.Scale, c.Ratio)
		flip = r.uniform() < c.FlipProb
	} else {
		side := float64(min(p.H, p.W))
		x0, y0, bw, bh = (float64(p.W)-side)/2, (float64(p.H)-side)/2, side, side
	}
	rgb := make([]float32, 3*S*S) // CHW in [0, 1]
	resample(p, x0, y0, bw, bh, S, flip, rgb)

	if c.Train {
		// Colour: jitter (in a random order), grayscale, blur.
		if r.uniform() < c.JitterProb {
			order := [4]int{0, 1, 2, 3}
			for i := 3; i > 0; i-- {
				j := r.intn(i + 1)
				order[i], order[j] = order[j], order[i]
			}
			factor := func(s float64) float64 { return r.between(max(0, 1-s), 1+s) }
			fb, fc, fs, fh := factor(c.Brightness), factor(c.Contrast), factor(c.Saturation), r.between(-c.Hue, c.Hue)
			for _, op := range order {
				switch op {
				case 0:
					if c.Brightness > 0 {
						adjustBrightness(rgb, float32(fb))
					}
				case 1:
					if c.Contrast > 0 {
						adjustContrast(rgb, S, float32(fc))
					}
				case 2:
					if c.Saturation > 0 {
						adjustSaturation(rgb, S, float32(fs))
					}
				case 3:
					if c.Hue > 0 {
						adjustHue(rgb, S, fh)
					}
				}
			}
		}
		if r.uniform() < c.GrayProb {
			adjustSaturation(rgb, S, 0)
		}
		if r.uniform() < c.BlurProb {
			sigma := r.between(c.BlurSigma[0], c.BlurSigma[1])
			k := max(3, int(c.BlurKernel*float64(S))|1)
			gaussianBlur(rgb, S, sigma, k)
		}
	}

	// Normalisation, Channels out of the three.
	n := S * S
	if c.Channels == 1 {
		m, s := c.Mean[0], c.Std[0]
		for i := range n {
			dst[i] = (luma(rgb[i], rgb[n+i], rgb[2*n+i]) - m) / s
		}
		return nil
	}
	for ch := range 3 {
		m, s := c.Mean[ch], c.Std[ch]
		src, out := rgb[ch*n:(ch+1)*n], dst[ch*n:(ch+1)*n]
		for i, v := range src {
			out[i] = (v - m) / s
		}
	}
	return nil
}

// randomResizedCrop draws the box (x0, y0, w, h) of torchvision's
// RandomResizedCrop.get_params: up to ten tries of an area fraction in
// scale and a log-uniform aspect ratio in ratio that fit the image, else
// the centre crop with the ratio clamped to the range.
func randomResizedCrop(r *rng, H, W int, scale, ratio [2]float64) (x0, y0, w, h float64) {
	area := float64(H * W)
	lr0, lr1 := math.Log(ratio[0]), math.Log(ratio[1])
	for range 10 {
		target := area * r.between(scale[0], scale[1])
		aspect := math.Exp(r.between(lr0, lr1))
		cw := int(math.Round(math.Sqrt(target * aspect)))
		ch := int(math.Round(math.Sqrt(target / aspect)))
		if cw > 0 && ch > 0 && cw <= W && ch <= H {
			i := r.intn(H - ch + 1)
			j := r.intn(W - cw + 1)
			return float64(j), float64(i), float64(cw), float64(ch)
		}
	}
	inRatio := float64(W) / float64(H)
	cw, ch := W, H
	switch {
	case inRatio < ratio[0]:
		ch = int(math.Round(float64(W) / ratio[0]))
	case inRatio > ratio[1]:
		cw = int(math.Round(float64(H) * ratio[1]))
	}
	return float64((W - cw) / 2), float64((H - ch) / 2), float64(cw), float64(ch)
}

// tap is one source pixel's weight in an output pixel.
type tap struct {
	i int
	w float32
}

// axisTaps maps out output pixels onto the source interval [x0, x0+n) of
// an axis of src pixels. Shrinking (n > out) averages the area each output
// pixel covers; enlarging interpolates linearly between pixel centres.
func axisTaps(x0, n float64, out, src int) [][]tap {
	taps := make([][]tap, out)
	scale := n / float64(out)
	for o := range out {
		if scale > 1 {
			a, b := x0+float64(o)*scale, x0+float64(o+1)*scale
			var t []tap
			for i := int(math.Floor(a)); float64(i) < b; i++ {
				lo, hi := max(a, float64(i)), min(b, float64(i+1))
				if hi > lo {
					t = append(t, tap{clampInt(i, 0, src-1), float32((hi - lo) / scale)})
				}
			}
			taps[o] = t
			continue
		}
		x := x0 + (float64(o)+0.5)*scale - 0.5
		x = min(max(x, 0), float64(src-1))
		i := int(math.Floor(x))
		f := x - float64(i)
		if i+1 < src && f > 0 {
			taps[o] = []tap{{i, float32(1 - f)}, {i + 1, float32(f)}}
		} else {
			taps[o] = []tap{{i, 1}}
		}
	}
	return taps
}

// resample writes the box (x0, y0, bw, bh) of p, resized to S×S and
// mirrored when flip, as CHW RGB in [0, 1] into dst (3·S·S floats). It is
// separable: rows first, into a bh-tall intermediate, then columns.
func resample(p Picture, x0, y0, bw, bh float64, S int, flip bool, dst []float32) {
	tx := axisTaps(x0, bw, S, p.W)
	ty := axisTaps(y0, bh, S, p.H)
	// Rows of the source that any output needs.
	rlo, rhi := p.H, 0
	for _, t := range ty {
		for _, k := range t {
			rlo, rhi = min(rlo, k.i), max(rhi, k.i+1)
		}
	}
	C := p.C
	tmp := make([]float32, (rhi-rlo)*S*C) // [row][x][c]
	for y := rlo; y < rhi; y++ {
		src := p.Pix[y*p.W*C : (y+1)*p.W*C]
		row := tmp[(y-rlo)*S*C : (y-rlo+1)*S*C]
		for x := range S {
			xo := x
			if flip {
				xo = S - 1 - x
			}
			for c := range C {
				var s float32
				for _, k := range tx[x] {
					s += k.w * float32(src[k.i*C+c])
				}
				row[xo*C+c] = s
			}
		}
	}
	n := S * S
	for y := range S {
		for x := range S {
			var v [3]float32
			for _, k := range ty[y] {
				o := (k.i-rlo)*S*C + x*C
				for c := range C {
					v[c] += k.w * tmp[o+c]
				}
			}
			if C == 1 {
				v[1], v[2] = v[0], v[0]
			}
			for c := range 3 {
				dst[c*n+y*S+x] = v[c] / 255
			}
		}
	}
}

// luma is ITU-R BT.601 luma, the grey torchvision's rgb_to_grayscale uses.
func luma(r, g, b float32) float32 { return 0.299*r + 0.587*g + 0.114*b }

func clamp01(v float32) float32 { return min(max(v, 0), 1) }

// blend sets img ← clamp(f·img + (1−f)·other) per element, the form of
// every torchvision colour adjustment.
func adjustBrightness(rgb []float32, f float32) {
	for i, v := range rgb {
		rgb[i] = clamp01(f * v)
	}
}

// adjustContrast blends with the mean grey level of the image.
func adjustContrast(rgb []float32, S int, f float32) {
	n := S * S
	var mean float64
	for i := range n {
		mean += float64(luma(rgb[i], rgb[n+i], rgb[2*n+i]))
	}
	m := float32(mean / float64(n))
	for i, v := range rgb {
		rgb[i] = clamp01(f*v + (1-f)*m)
	}
}

// adjustSaturation blends each pixel with its grey level (f = 0 is
// grayscale).
func adjustSaturation(rgb []float32, S int, f float32) {
	n := S * S
	for i := range n {
		g := luma(rgb[i], rgb[n+i], rgb[2*n+i])
		for c := range 3 {
			rgb[c*n+i] = clamp01(f*rgb[c*n+i] + (1-f)*g)
		}
	}
}

// adjustHue rotates the hue by shift turns in HSV space.
func adjustHue(rgb []float32, S int, shift float64) {
	n := S * S
	for i := range n {
		r, g, b := float64(rgb[i]), float64(rgb[n+i]), float64(rgb[2*n+i])
		mx, mn := max(r, g, b), min(r, g, b)
		v, d := mx, mx-mn
		if d == 0 {
			continue // grey: hue has no effect
		}
		s := d / mx
		var h float64
		switch mx {
		case r:
			h = (g - b) / d
		case g:
			h = 2 + (b-r)/d
		default:
			h = 4 + (r-g)/d
		}
		h = h/6 + shift
		h -= math.Floor(h)
		// HSV back to RGB.
		h6 := h * 6
		k := math.Floor(h6)
		f := h6 - k
		p, q, t := v*(1-s), v*(1-s*f), v*(1-s*(1-f))
		switch int(k) % 6 {
		case 0:
			r, g, b = v, t, p
		case 1:
			r, g, b = q, v, p
		case 2:
			r, g, b = p, v, t
		case 3:
			r, g, b = p, q, v
		case 4:
			r, g, b = t, p, v
		default:
			r, g, b = v, p, q
		}
		rgb[i], rgb[n+i], rgb[2*n+i] = float32(r), float32(g), float32(b)
	}
}

// gaussianBlur convolves each channel with the k-tap kernel
// G(x) ∝ exp(−x²/2σ²), separably, reflecting at the borders.
func gaussianBlur(rgb []float32, S int, sigma float64, k int) {
	half := k / 2
	w := make([]float32, k)
	var sum float64
	for i := range k {
		x := float64(i - half)
		g := math.Exp(-x * x / (2 * sigma * sigma))
		w[i] = float32(g)
		sum += g
	}
	for i := range w {
		w[i] /= float32(sum)
	}
	reflect := func(i int) int {
		for i < 0 || i >= S {
			if i < 0 {
				i = -i
			}
			if i >= S {
				i = 2*(S-1) - i
			}
			if S == 1 {
				return 0
			}
		}
		return i
	}
	n := S * S
	tmp := make([]float32, n)
	for c := range 3 {
		img := rgb[c*n : (c+1)*n]
		for y := range S {
			for x := range S {
				var s float32
				for j, wj := range w {
					s += wj * img[y*S+reflect(x+j-half)]
				}
				tmp[y*S+x] = s
			}
		}
		for y := range S {
			for x := range S {
				var s float32
				for j, wj := range w {
					s += wj * tmp[reflect(y+j-half)*S+x]
				}
				img[y*S+x] = s
			}
		}
	}
}

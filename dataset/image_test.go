package dataset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// gradient is an RGB test image: red rises along x, green along y, blue
// is constant.
func gradient(w, h int) *image.NRGBA {
	im := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			im.SetNRGBA(x, y, color.NRGBA{uint8(x * 255 / max(w-1, 1)), uint8(y * 255 / max(h-1, 1)), 100, 255})
		}
	}
	return im
}

func encode(t testing.TB, format string, im image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&buf, im)
	case "jpeg":
		err = jpeg.Encode(&buf, im, &jpeg.Options{Quality: 95})
	case "gif":
		err = gif.Encode(&buf, im, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDecodeImage(t *testing.T) {
	im := gradient(9, 5)
	for _, format := range []string{"png", "jpeg", "gif"} {
		data := encode(t, format, im)
		p, err := DecodeImage(data, "x", nil)
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if p.H != 5 || p.W != 9 || p.C != 3 || p.Validate() != nil {
			t.Fatalf("%s: %d×%d×%d", format, p.H, p.W, p.C)
		}
		// The pixels are those the standard library's colour model gives
		// (8-bit RGB of the decoded image, all opaque here).
		ref, _, err := image.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		for y := range 5 {
			for x := range 9 {
				c := color.NRGBAModel.Convert(ref.At(x, y)).(color.NRGBA)
				got := p.Pix[(y*9+x)*3:][:3]
				if got[0] != c.R || got[1] != c.G || got[2] != c.B {
					t.Fatalf("%s (%d, %d): %v, want %v", format, x, y, got, c)
				}
			}
		}
		if format == "png" {
			for i := range 45 {
				if p.Pix[3*i] != im.Pix[4*i] || p.Pix[3*i+1] != im.Pix[4*i+1] || p.Pix[3*i+2] != im.Pix[4*i+2] {
					t.Fatalf("png pixel %d differs from the encoded image", i)
				}
			}
		}
	}
}

func TestDecodeGreyAndAlpha(t *testing.T) {
	g := image.NewGray(image.Rect(0, 0, 3, 2))
	g.Pix = []byte{0, 50, 100, 150, 200, 250}
	p, err := DecodeImage(encode(t, "png", g), "g", nil)
	if err != nil || p.C != 1 || !slices.Equal(p.Pix, g.Pix) {
		t.Fatalf("grey: %+v %v", p, err)
	}
	rgb := RGB(p)
	if rgb.C != 3 || rgb.Pix[3*4] != 200 || rgb.Pix[3*4+1] != 200 || rgb.Pix[3*4+2] != 200 {
		t.Fatalf("RGB of grey: %v", rgb.Pix)
	}

	// Transparent, half-transparent and opaque red over white and black.
	a := image.NewNRGBA(image.Rect(0, 0, 3, 1))
	a.SetNRGBA(0, 0, color.NRGBA{255, 0, 0, 0})
	a.SetNRGBA(1, 0, color.NRGBA{255, 0, 0, 128})
	a.SetNRGBA(2, 0, color.NRGBA{255, 0, 0, 255})
	data := encode(t, "png", a)
	white, _ := DecodeImage(data, "a", nil)
	if want := []byte{255, 255, 255, 255, 127, 127, 255, 0, 0}; !slices.Equal(white.Pix, want) {
		t.Errorf("over white: %v, want %v", white.Pix, want)
	}
	black, _ := DecodeImage(data, "a", color.Black)
	if want := []byte{0, 0, 0, 128, 0, 0, 255, 0, 0}; !slices.Equal(black.Pix, want) {
		t.Errorf("over black: %v, want %v", black.Pix, want)
	}
	// The premultiplied path agrees with the straight one to a unit.
	pre := image.NewRGBA(a.Bounds())
	for x := range 3 {
		pre.Set(x, 0, a.At(x, 0))
	}
	for i, v := range FromImage(pre, nil).Pix {
		if d := int(v) - int(white.Pix[i]); d > 1 || d < -1 {
			t.Errorf("premultiplied over white, byte %d: %d, want %d", i, v, white.Pix[i])
		}
	}
}

func TestDecodeCorrupt(t *testing.T) {
	good := encode(t, "png", gradient(8, 8))
	for name, b := range map[string][]byte{
		"empty":     nil,
		"text":      []byte("not an image"),
		"truncated": good[:len(good)/2],
		"jpeg head": encode(t, "jpeg", gradient(8, 8))[:30],
	} {
		_, err := DecodeImage(b, "k", nil)
		var bad *BadSample
		if !errors.As(err, &bad) || bad.Reason != "corrupt-image" || !errors.Is(err, ErrBadSample) {
			t.Errorf("%s: %v, want a corrupt-image BadSample", name, err)
		}
	}
}

// constant returns an h×w RGB picture of one colour.
func constant(h, w int, c [3]byte) Picture {
	p := Picture{H: h, W: w, C: 3, Pix: make([]byte, h*w*3)}
	for i := range h * w {
		copy(p.Pix[3*i:], c[:])
	}
	return p
}

func TestViewEvalConstant(t *testing.T) {
	c := EvalViewConfig(8)
	dst := make([]float32, c.ViewLen())
	if err := View(c, constant(30, 20, [3]byte{255, 0, 51}), 1, 0, 0, 0, dst); err != nil {
		t.Fatal(err)
	}
	for ch, v := range []float32{1, 0, 0.2} {
		want := (v - c.Mean[ch]) / c.Std[ch]
		for i := range 64 {
			if d := dst[ch*64+i] - want; d > 1e-5 || d < -1e-5 {
				t.Fatalf("channel %d pixel %d = %v, want %v", ch, i, dst[ch*64+i], want)
			}
		}
	}
}

// TestResampleArea: shrinking a 2-pixel checkerboard by 2 averages every
// 2×2 block to mid-grey; enlarging interpolates between pixel centres.
func TestResampleArea(t *testing.T) {
	p := Picture{H: 8, W: 8, C: 1, Pix: make([]byte, 64)}
	for y := range 8 {
		for x := range 8 {
			if (x+y)%2 == 0 {
				p.Pix[y*8+x] = 200
			}
		}
	}
	out := make([]float32, 3*16)
	resample(p, 0, 0, 8, 8, 4, false, out)
	for i, v := range out {
		if math.Abs(float64(v)-100.0/255) > 1e-6 {
			t.Fatalf("area average %d = %v, want %v", i, v, 100.0/255)
		}
	}
	// 1×2 → 4×4: output centres fall at −0.25, 0.25, 0.75, 1.25 in source
	// pixels, clamped to the edge pixels.
	q := Picture{H: 1, W: 2, C: 1, Pix: []byte{0, 255}}
	row := make([]float32, 3*16)
	resample(q, 0, 0, 2, 1, 4, false, row)
	want := []float32{0, 0.25, 0.75, 1}
	for x, w := range want {
		if math.Abs(float64(row[x]-w)) > 1e-6 {
			t.Fatalf("bilinear x=%d: %v, want %v (row %v)", x, row[x], w, row[:4])
		}
	}
	// Flip mirrors the row.
	resample(q, 0, 0, 2, 1, 4, true, row)
	for x, w := range want {
		if math.Abs(float64(row[3-x]-w)) > 1e-6 {
			t.Fatalf("flipped x=%d: %v, want %v", 3-x, row[3-x], w)
		}
	}
}

func TestViewTrainDeterministic(t *testing.T) {
	c := SimCLRViewConfig(16)
	p := FromImage(gradient(40, 30), nil)
	a := make([]float32, c.ViewLen())
	b := make([]float32, c.ViewLen())
	for _, key := range [][4]int{{0, 0, 0, 0}, {3, 1, 7, 1}} {
		View(c, p, uint64(key[0]), key[1], key[2], key[3], a)
		View(c, p, uint64(key[0]), key[1], key[2], key[3], b)
		if !slices.Equal(a, b) {
			t.Fatalf("key %v: two calls differ", key)
		}
	}
	// The two views of a sample, and the same view in two epochs, differ.
	View(c, p, 1, 0, 5, 0, a)
	View(c, p, 1, 0, 5, 1, b)
	if slices.Equal(a, b) {
		t.Fatal("views 0 and 1 are equal")
	}
	View(c, p, 1, 1, 5, 0, b)
	if slices.Equal(a, b) {
		t.Fatal("epochs 0 and 1 give the same view")
	}
	for i, v := range a {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("value %d is %v", i, v)
		}
	}
}

// TestViewGreyChannels: a grey picture gives equal channels in an RGB
// view, and an RGB picture a luma channel in a one-channel view.
func TestViewGreyChannels(t *testing.T) {
	g := Picture{H: 4, W: 4, C: 1, Pix: []byte{0, 51, 102, 153, 0, 51, 102, 153, 0, 51, 102, 153, 0, 51, 102, 153}}
	c := EvalViewConfig(4)
	c.Mean, c.Std = [3]float32{}, [3]float32{1, 1, 1}
	dst := make([]float32, c.ViewLen())
	if err := View(c, g, 0, 0, 0, 0, dst); err != nil {
		t.Fatal(err)
	}
	for i := range 16 {
		if want := float32(g.Pix[i]) / 255; dst[i] != want || dst[16+i] != want || dst[32+i] != want {
			t.Fatalf("pixel %d: %v %v %v, want %v", i, dst[i], dst[16+i], dst[32+i], want)
		}
	}
	c.Channels = 1
	one := make([]float32, c.ViewLen())
	if err := View(c, constant(4, 4, [3]byte{255, 0, 0}), 0, 0, 0, 0, one); err != nil {
		t.Fatal(err)
	}
	if math.Abs(float64(one[5])-0.299) > 1e-6 {
		t.Fatalf("luma of red %v, want 0.299", one[5])
	}
	if err := View(c, Picture{H: 2, W: 2, C: 3, Pix: make([]byte, 5)}, 0, 0, 0, 0, one); err == nil {
		t.Fatal("a picture of the wrong size was viewed")
	}
}

// TestViewGrayscale: with grayscale certain and nothing else, the three
// channels of a view hold the same grey before normalisation.
func TestViewGrayscale(t *testing.T) {
	c := SimCLRViewConfig(8)
	c.JitterProb, c.BlurProb, c.GrayProb = 0, 0, 1
	c.Mean, c.Std = [3]float32{}, [3]float32{1, 1, 1}
	dst := make([]float32, c.ViewLen())
	if err := View(c, FromImage(gradient(20, 20), nil), 1, 0, 0, 0, dst); err != nil {
		t.Fatal(err)
	}
	for i := range 64 {
		if dst[i] != dst[64+i] || dst[i] != dst[128+i] {
			t.Fatalf("pixel %d: %v %v %v", i, dst[i], dst[64+i], dst[128+i])
		}
	}
}

func TestColourOps(t *testing.T) {
	px := func(r, g, b float32) []float32 { return []float32{r, g, b} }
	// Hue: a full turn changes nothing; a third of a turn maps red to green.
	v := px(1, 0, 0)
	adjustHue(v, 1, 1.0/3)
	if math.Abs(float64(v[1]-1)) > 1e-6 || v[0] > 1e-6 || v[2] > 1e-6 {
		t.Errorf("red +1/3 turn: %v, want green", v)
	}
	v = px(0.2, 0.5, 0.9)
	adjustHue(v, 1, 1)
	if math.Abs(float64(v[0]-0.2))+math.Abs(float64(v[1]-0.5))+math.Abs(float64(v[2]-0.9)) > 1e-5 {
		t.Errorf("a full turn: %v", v)
	}
	v = px(0.2, 0.5, 0.9)
	adjustSaturation(v, 1, 0)
	g := luma(0.2, 0.5, 0.9)
	if v[0] != g || v[1] != g || v[2] != g {
		t.Errorf("saturation 0: %v, want grey %v", v, g)
	}
	v = px(0.2, 0.5, 0.9)
	adjustBrightness(v, 2)
	if v[0] != 0.4 || v[1] != 1 || v[2] != 1 {
		t.Errorf("brightness 2: %v", v)
	}
	// Blur keeps a constant image and the mean of any image (reflection
	// keeps mass only approximately, so the image is periodic-free here).
	img := make([]float32, 3*25)
	for i := range img {
		img[i] = 0.3
	}
	gaussianBlur(img, 5, 1.5, 3)
	for i, x := range img {
		if math.Abs(float64(x-0.3)) > 1e-6 {
			t.Fatalf("blurred constant %d: %v", i, x)
		}
	}
}

func TestRandomResizedCrop(t *testing.T) {
	for s := range 200 {
		r := newRNG(domainView, uint64(s))
		x0, y0, w, h := randomResizedCrop(&r, 30, 50, [2]float64{0.08, 1}, [2]float64{3.0 / 4, 4.0 / 3})
		if x0 < 0 || y0 < 0 || w < 1 || h < 1 || x0+w > 50 || y0+h > 30 {
			t.Fatalf("seed %d: box (%v, %v, %v, %v) outside 50×30", s, x0, y0, w, h)
		}
	}
	// A ratio no box can have falls back to the clamped centre crop.
	r := newRNG(domainView, 1)
	x0, y0, w, h := randomResizedCrop(&r, 10, 100, [2]float64{0.99, 1}, [2]float64{0.5, 0.5})
	if w != 5 || h != 10 || x0 != 47 || y0 != 0 {
		t.Fatalf("fallback box (%v, %v, %v, %v), want (47, 0, 5, 10)", x0, y0, w, h)
	}
}

func TestViewConfigValidate(t *testing.T) {
	if err := SimCLRViewConfig(32).Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*ViewConfig){
		"size":     func(c *ViewConfig) { c.Size = 0 },
		"channels": func(c *ViewConfig) { c.Channels = 2 },
		"scale":    func(c *ViewConfig) { c.Scale = [2]float64{0.5, 0.1} },
		"prob":     func(c *ViewConfig) { c.GrayProb = 1.5 },
		"hue":      func(c *ViewConfig) { c.Hue = 0.7 },
		"std":      func(c *ViewConfig) { c.Std[1] = 0 },
		"sigma":    func(c *ViewConfig) { c.BlurSigma = [2]float64{0, 1} },
	} {
		c := SimCLRViewConfig(32)
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestSynthetic(t *testing.T) {
	src, err := Open("synthetic:5", OpenOptions{Seed: 3, Synthetic: SyntheticConfig{H: 4, W: 6, Action: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if src.Len() != 5 || !slices.Contains(src.Fields(), FieldAction) {
		t.Fatalf("len %d fields %v", src.Len(), src.Fields())
	}
	var a, b Sample
	ctx := context.Background()
	src.Sample(ctx, 2, &a)
	src.Sample(ctx, 2, &b)
	if !slices.Equal(a.Image.Pix, b.Image.Pix) || a.Text != b.Text || a.Image.Validate() != nil || len(a.Action) != 2 {
		t.Fatalf("sample 2 twice: %+v / %+v", a, b)
	}
	for _, f := range src.Fields() {
		if !a.Has(f) {
			t.Errorf("sample lacks %s", f)
		}
	}
	if tok := NewTokenizer(src.(*Synthetic).Vocabulary()); slices.Contains(tok.Encode(a.Text, nil), Unknown) {
		t.Fatalf("caption %q has a word outside the vocabulary", a.Text)
	}
	src.Sample(ctx, 3, &b)
	if slices.Equal(a.Image.Pix, b.Image.Pix) {
		t.Fatal("samples 2 and 3 are equal")
	}
	if err := src.Sample(ctx, 5, &b); err == nil {
		t.Fatal("sample 5 of 5 read")
	}
	for _, spec := range []string{"synthetic:0", "synthetic:x", "synthetic:-3"} {
		if _, err := Open(spec, OpenOptions{}); err == nil {
			t.Errorf("%s opened", spec)
		}
	}
}

func TestOpenBuiltins(t *testing.T) {
	src, err := Open("mnist", OpenOptions{Test: true})
	if err != nil {
		t.Fatal(err)
	}
	if src.Len() != 10000 || !strings.Contains(src.Name(), "test") {
		t.Fatalf("mnist test: %s, %d", src.Name(), src.Len())
	}
	if _, err := Open("nosuch:thing", OpenOptions{}); err == nil || !strings.Contains(err.Error(), "dataset/sources") {
		t.Fatalf("unknown scheme: %v", err)
	}
	if _, err := Open("idx:"+filepath.Join(t.TempDir(), "none"), OpenOptions{}); err == nil {
		t.Fatal("a missing idx folder opened")
	}
}

func TestTemplates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.txt")
	os.WriteFile(path, []byte("# CLIP style\na photo of a {}.\n\n  a {} in the wild  \n"), 0o644)
	tm, err := ReadTemplates(path)
	if err != nil || !slices.Equal(tm, []string{"a photo of a {}.", "a {} in the wild"}) {
		t.Fatalf("ReadTemplates: %q %v", tm, err)
	}
	c := NewTemplateCaptioner([]string{"golden retriever", "owl"}, tm)
	if c.Text(1, 0) != "a photo of a owl." || c.Text(0, 1) != "a golden retriever in the wild" || len(c.Corpus()) != 4 {
		t.Fatalf("captions %q", c.Corpus())
	}
	if ClassCaption(c, 1, 5, 0) != "" || ClassCaption(c, 1, 0, 3) == "" {
		t.Fatal("ClassCaption of a bad or good label")
	}
	for name, text := range map[string]string{"no braces": "a photo\n", "empty": "# only a comment\n"} {
		if _, err := ParseTemplates([]byte(text), name); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := ReadTemplates(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("a missing templates file read")
	}
}

// BenchmarkDecode64 measures the decoding of one 64×64 RGB image; run with
// -cpu 1 for images per second per core. images/cpu-s divides by the CPU
// time the process used, which a busy machine disturbs less than the wall
// time.
func BenchmarkDecode64(b *testing.B) {
	im := gradient(64, 64)
	// Some texture, so that the encoders do not compress to nothing.
	for i := range im.Pix {
		if i%4 != 3 {
			im.Pix[i] ^= byte(i * 7919 >> 3)
		}
	}
	for _, format := range []string{"png", "jpeg"} {
		data := encode(b, format, im)
		b.Run(format, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			cpu0 := cpuSeconds()
			for b.Loop() {
				if _, err := DecodeImage(data, "b", nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "images/s")
			if cpu := cpuSeconds() - cpu0; cpu > 0 {
				b.ReportMetric(float64(b.N)/cpu, "images/cpu-s")
			}
		})
	}
}

// BenchmarkView measures one SimCLR training view of a 64×64 picture at
// side 32 and one evaluation view.
func BenchmarkView(b *testing.B) {
	p := FromImage(gradient(64, 64), nil)
	for _, c := range []ViewConfig{SimCLRViewConfig(32), EvalViewConfig(32)} {
		name := "eval"
		if c.Train {
			name = "simclr"
		}
		dst := make([]float32, c.ViewLen())
		b.Run(name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				View(c, p, 1, 0, i, 0, dst)
				i++
			}
		})
	}
}

// TestFromYCbCr compares the planar conversion with the standard
// library's colour model for every subsampling ratio, on a whole image and
// on a sub-image with odd bounds.
func TestFromYCbCr(t *testing.T) {
	for _, ratio := range []image.YCbCrSubsampleRatio{
		image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio420,
		image.YCbCrSubsampleRatio440, image.YCbCrSubsampleRatio411, image.YCbCrSubsampleRatio410,
	} {
		m := image.NewYCbCr(image.Rect(0, 0, 13, 7), ratio)
		for i := range m.Y {
			m.Y[i] = byte(i * 37)
		}
		for i := range m.Cb {
			m.Cb[i], m.Cr[i] = byte(i*91+7), byte(255-i*53)
		}
		for _, im := range []image.Image{m, m.SubImage(image.Rect(3, 1, 12, 6))} {
			p := FromImage(im, nil)
			b := im.Bounds()
			for y := range b.Dy() {
				for x := range b.Dx() {
					c := color.RGBAModel.Convert(im.At(b.Min.X+x, b.Min.Y+y)).(color.RGBA)
					got := p.Pix[(y*b.Dx()+x)*3:][:3]
					if got[0] != c.R || got[1] != c.G || got[2] != c.B {
						t.Fatalf("%v %v (%d, %d): %v, want %v", ratio, b, x, y, got, c)
					}
				}
			}
		}
	}
}

func FuzzDecodeImage(f *testing.F) {
	for _, format := range []string{"png", "jpeg", "gif"} {
		f.Add(encode(f, format, gradient(5, 3)))
	}
	g := image.NewGray(image.Rect(0, 0, 2, 2))
	f.Add(encode(f, "png", g))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeImage(b, "f", nil)
		if err != nil {
			var bad *BadSample
			if !errors.As(err, &bad) || bad.Reason != "corrupt-image" {
				t.Fatalf("error %v is not a corrupt-image BadSample", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		c := EvalViewConfig(4)
		if err := View(c, p, 0, 0, 0, 0, make([]float32, c.ViewLen())); err != nil {
			t.Fatal(err)
		}
	})
}

func TestReason(t *testing.T) {
	_, err := DecodeImage(nil, "k", nil)
	if Reason(err) != "corrupt-image" || Reason(nil) != "" || Reason(errors.New("io")) != "" {
		t.Fatalf("Reason(%v) = %q", err, Reason(err))
	}
	if Reason(fmt.Errorf("read: %w", &BadSample{Reason: "bad-npy"})) != "bad-npy" {
		t.Fatal("Reason of a wrapped BadSample")
	}
}

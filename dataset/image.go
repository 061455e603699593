package dataset

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/gif"  // registers GIF with image.Decode
	"image/jpeg" // registers JPEG
	"image/png"  // registers PNG
)

// Keep the decoders referenced: DecodeImage relies on their registration.
var _, _, _ = gif.Decode, jpeg.Decode, png.Decode

// White is the default background that transparent pixels are composited
// onto.
var White = color.RGBA{255, 255, 255, 255}

// MaxImagePixels bounds the decoded size of one image (H·W), so that a
// corrupt or hostile header cannot make a decoder allocate gigabytes.
const MaxImagePixels = 1 << 26

// DecodeImage decodes a PNG, JPEG or GIF (the first frame) into a Picture.
// Grey images without transparency stay grey (C = 1); everything else
// becomes RGB (C = 3), with transparent pixels composited onto bg (White
// when bg is nil) by the "over" operator, out = α·src + (1−α)·bg.
// A file that cannot be decoded returns a *BadSample with reason
// "corrupt-image"; key names the sample in it.
func DecodeImage(data []byte, key string, bg color.Color) (Picture, error) {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return Picture{}, &BadSample{Reason: "corrupt-image", Key: key, Err: err}
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > MaxImagePixels/max(cfg.Height, 1) {
		return Picture{}, &BadSample{Reason: "corrupt-image", Key: key,
			Err: fmt.Errorf("image of %d×%d pixels: want 1 to %d pixels", cfg.Width, cfg.Height, MaxImagePixels)}
	}
	im, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return Picture{}, &BadSample{Reason: "corrupt-image", Key: key, Err: err}
	}
	if im.Bounds().Empty() {
		// A GIF's first frame may be empty within a non-empty screen.
		return Picture{}, &BadSample{Reason: "corrupt-image", Key: key, Err: fmt.Errorf("empty image %v", im.Bounds())}
	}
	return FromImage(im, bg), nil
}

// FromImage converts a decoded image to a Picture as DecodeImage does.
func FromImage(im image.Image, bg color.Color) Picture {
	if bg == nil {
		bg = White
	}
	b := im.Bounds()
	h, w := b.Dy(), b.Dx()
	switch m := im.(type) {
	case *image.Gray:
		p := Picture{H: h, W: w, C: 1, Pix: make([]byte, h*w)}
		for y := range h {
			copy(p.Pix[y*w:(y+1)*w], m.Pix[y*m.Stride:y*m.Stride+w])
		}
		return p
	case *image.YCbCr:
		return fromYCbCr(m)
	}
	br, bgc, bb, _ := bg.RGBA()
	back := [3]uint32{br >> 8, bgc >> 8, bb >> 8}
	if m, ok := im.(*image.RGBA); ok {
		// Premultiplied: out = src + (1−α)·bg.
		p := Picture{H: h, W: w, C: 3, Pix: make([]byte, h*w*3)}
		for y := range h {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			o := p.Pix[y*w*3:]
			for x := range w {
				s := row[4*x : 4*x+4]
				a := 255 - uint32(s[3])
				for c := range 3 {
					o[3*x+c] = byte(min(255, uint32(s[c])+(back[c]*a+127)/255))
				}
			}
		}
		return p
	}
	// Everything else goes through NRGBA (non-premultiplied) and is
	// composited onto the background here.
	var n *image.NRGBA
	if m, ok := im.(*image.NRGBA); ok {
		n = m
	} else {
		n = image.NewNRGBA(image.Rect(0, 0, w, h))
		draw.Draw(n, n.Bounds(), im, b.Min, draw.Src)
		b = n.Bounds()
	}
	p := Picture{H: h, W: w, C: 3, Pix: make([]byte, h*w*3)}
	for y := range h {
		row := n.Pix[(y+b.Min.Y-n.Rect.Min.Y)*n.Stride+(b.Min.X-n.Rect.Min.X)*4:]
		o := p.Pix[y*w*3:]
		for x := range w {
			s := row[4*x : 4*x+4]
			a := uint32(s[3])
			for c := range 3 {
				// Rounded α·src + (1−α)·bg in 8-bit fixed point.
				o[3*x+c] = byte((uint32(s[c])*a + back[c]*(255-a) + 127) / 255)
			}
		}
	}
	return p
}

// RGB returns p with three channels: a grey picture has its one channel
// repeated, an RGB picture is returned as it is.
func RGB(p Picture) Picture {
	if p.C == 3 {
		return p
	}
	q := Picture{H: p.H, W: p.W, C: 3, Pix: make([]byte, p.H*p.W*3)}
	for i, v := range p.Pix[:p.H*p.W] {
		q.Pix[3*i], q.Pix[3*i+1], q.Pix[3*i+2] = v, v, v
	}
	return q
}

// Validate checks that p's sizes agree with its pixels.
func (p Picture) Validate() error {
	if p.H <= 0 || p.W <= 0 || (p.C != 1 && p.C != 3) {
		return fmt.Errorf("dataset: picture %d×%d×%d: want positive sizes and 1 or 3 channels", p.H, p.W, p.C)
	}
	if len(p.Pix) != p.H*p.W*p.C {
		return fmt.Errorf("dataset: picture %d×%d×%d holds %d bytes, want %d", p.H, p.W, p.C, len(p.Pix), p.H*p.W*p.C)
	}
	return nil
}

// fromYCbCr converts a JPEG's planes to RGB with the standard library's
// integer formula (color.YCbCrToRGB), walking the chroma planes by the
// subsampling ratio instead of calling COffset per pixel.
func fromYCbCr(m *image.YCbCr) Picture {
	b := m.Bounds()
	h, w := b.Dy(), b.Dx()
	p := Picture{H: h, W: w, C: 3, Pix: make([]byte, h*w*3)}
	var sx, sy int // log2 of the horizontal and vertical subsampling
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio422:
		sx = 1
	case image.YCbCrSubsampleRatio420:
		sx, sy = 1, 1
	case image.YCbCrSubsampleRatio440:
		sy = 1
	case image.YCbCrSubsampleRatio411:
		sx = 2
	case image.YCbCrSubsampleRatio410:
		sx, sy = 2, 1
	}
	for y := range h {
		yy := b.Min.Y + y
		yrow := m.Y[(yy-m.Rect.Min.Y)*m.YStride:]
		crow := (yy>>sy - m.Rect.Min.Y>>sy) * m.CStride
		o := p.Pix[y*w*3 : (y+1)*w*3]
		for x := range w {
			xx := b.Min.X + x
			ci := crow + (xx>>sx - m.Rect.Min.X>>sx)
			r, g, bb := color.YCbCrToRGB(yrow[xx-m.Rect.Min.X], m.Cb[ci], m.Cr[ci])
			o[3*x], o[3*x+1], o[3*x+2] = r, g, bb
		}
	}
	return p
}

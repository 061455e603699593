package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"strings"

	xdraw "golang.org/x/image/draw"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/infonce/infonce/dataset"
)

// The contact sheet of 'data inspect': an 8×8 grid of cells, each a
// thumbnail (the image scaled to fit dataThumbSide, centred) over two
// lines of text (the sample's index and its caption, class or label).

const (
	dataSheetCols  = 8
	dataSheetRows  = 8
	dataSheetCells = dataSheetCols * dataSheetRows
	dataThumbSide  = 120
	dataCellPad    = 4
	dataTextLines  = 2
	dataLineHeight = 13 // basicfont.Face7x13
	dataCharWidth  = 7
	dataCellW      = dataThumbSide + 2*dataCellPad
	dataCellH      = dataCellPad + dataThumbSide + dataCellPad + dataTextLines*dataLineHeight + dataCellPad
)

var (
	dataSheetBackground = color.RGBA{32, 32, 32, 255}
	dataSheetText       = color.RGBA{235, 235, 235, 255}
	dataSheetBad        = color.RGBA{110, 0, 0, 255}
)

// dataCell is one cell of a contact sheet.
type dataCell struct {
	thumb *image.RGBA // nil for a bad sample
	text  string
}

// dataCellOf makes the cell of sample s (read with error err): its
// thumbnail and its text. names are the class names by label.
func dataCellOf(index int, s *dataset.Sample, err error, names []string) dataCell {
	if err != nil {
		reason := dataset.Reason(err)
		if reason == "" {
			reason = dataReadError
		}
		return dataCell{text: fmt.Sprintf("%d bad: %s", index, reason)}
	}
	c := dataCell{}
	if s.Has(dataset.FieldImage) && s.Image.Validate() == nil {
		c.thumb = dataThumb(s.Image, dataThumbSide)
	}
	label := s.Text
	if label == "" && s.Label >= 0 {
		if s.Label < len(names) {
			label = names[s.Label]
		} else {
			label = fmt.Sprintf("label %d", s.Label)
		}
	}
	c.text = fmt.Sprintf("%d %s", index, label)
	return c
}

// dataThumb scales p to fit a side×side square, keeping its aspect ratio
// (bilinear: averaging when it shrinks).
func dataThumb(p dataset.Picture, side int) *image.RGBA {
	rgb := dataset.RGB(p)
	src := image.NewRGBA(image.Rect(0, 0, rgb.W, rgb.H))
	for i := range rgb.H * rgb.W {
		copy(src.Pix[4*i:4*i+3], rgb.Pix[3*i:3*i+3])
		src.Pix[4*i+3] = 255
	}
	w, h := side, side
	if p.W > p.H {
		h = max(1, side*p.H/p.W)
	} else {
		w = max(1, side*p.W/p.H)
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	xdraw.BiLinear.Scale(dst, dst.Bounds(), src, src.Bounds(), xdraw.Src, nil)
	return dst
}

// dataWrap cuts text into at most lines lines of at most width
// characters, at spaces where it can, ending with "..." when it does not
// fit. Characters outside printable ASCII (which the font lacks) become
// '?'.
func dataWrap(text string, width, lines int) []string {
	text = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			if r == '\n' || r == '\t' {
				return ' '
			}
			return '?'
		}
		return r
	}, text)
	words := strings.Fields(text)
	var out []string
	cur := ""
	for len(words) > 0 {
		w := words[0]
		switch {
		case cur == "" && len(w) > width:
			cur, words[0] = w[:width], w[width:]
		case cur == "":
			cur, words = w, words[1:]
			continue
		case len(cur)+1+len(w) <= width:
			cur, words = cur+" "+w, words[1:]
			continue
		}
		out = append(out, cur)
		cur = ""
		if len(out) == lines {
			break
		}
	}
	if cur != "" && len(out) < lines {
		out = append(out, cur)
	}
	if len(words) > 0 && len(out) == lines {
		last := out[lines-1]
		if len(last) > width-3 {
			last = last[:width-3]
		}
		out[lines-1] = last + "..."
	}
	return out
}

// dataDrawSheet draws up to dataSheetCells cells, row by row, on a grid of
// dataSheetCols×dataSheetRows.
func dataDrawSheet(cells []dataCell) *image.RGBA {
	sheet := image.NewRGBA(image.Rect(0, 0, dataSheetCols*dataCellW, dataSheetRows*dataCellH))
	draw.Draw(sheet, sheet.Bounds(), image.NewUniform(dataSheetBackground), image.Point{}, draw.Src)
	d := font.Drawer{Dst: sheet, Src: image.NewUniform(dataSheetText), Face: basicfont.Face7x13}
	for i, c := range cells[:min(len(cells), dataSheetCells)] {
		x0, y0 := (i%dataSheetCols)*dataCellW, (i/dataSheetCols)*dataCellH
		box := image.Rect(x0+dataCellPad, y0+dataCellPad, x0+dataCellPad+dataThumbSide, y0+dataCellPad+dataThumbSide)
		if c.thumb == nil {
			draw.Draw(sheet, box, image.NewUniform(dataSheetBad), image.Point{}, draw.Src)
		} else {
			b := c.thumb.Bounds()
			at := box.Min.Add(image.Pt((dataThumbSide-b.Dx())/2, (dataThumbSide-b.Dy())/2))
			draw.Draw(sheet, image.Rectangle{at, at.Add(b.Size())}, c.thumb, b.Min, draw.Src)
		}
		for l, line := range dataWrap(c.text, dataThumbSide/dataCharWidth, dataTextLines) {
			base := box.Max.Y + dataCellPad + (l+1)*dataLineHeight - 2 // baseline; descent 2 of Face7x13
			d.Dot = fixed.P(box.Min.X, base)
			d.DrawString(line)
		}
	}
	return sheet
}
